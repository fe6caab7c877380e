"""Tables and TFDS sources -> validated examples -> tf.data pipelines; the demo data set."""
