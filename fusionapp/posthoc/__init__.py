"""What is fitted after the network, on held-out logits: the wide path's linear model and blend
weight (`wide`, `linear`), the decision offsets and thresholds (`decisions`), the temperature
(`temperature`), in the order `fit` runs them."""
