"""fusionapp: image + text (+ tabular) classifiers you can train, evaluate and serve."""

__version__ = "0.17.0"

# The Python API is imported lazily so `import fusionapp` (and `fusionapp --help`) stays fast:
# TensorFlow is only loaded when one of these functions is first used.
_API = {
    "train": "fusionapp.search.api",
    "evaluate": "fusionapp.evaluation",
    "predict": "fusionapp.inference",
    "make_demo": "fusionapp.data.demo",
    "audit_table": "fusionapp.audit.api",
}


def load_model(path: str) -> "keras.Model":  # noqa: F821 - keras is imported when called
    """Load a trained model in safe mode, with its preprocessor.

    Args:
        path: A run folder written by `train`, or the `model.keras` inside it.

    Returns:
        The Keras model (a fusionapp.model.FusionClassifier). Its preprocessor is
            `model.preprocessor`: `model.preprocessor.encode(raw)` gives the network's inputs.

    Raises:
        fusionapp.errors.FusionError: A missing, damaged or foreign model file, in one line.
    """
    from fusionapp.runs.load import load_model as load

    return load(path)


def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'fusionapp' has no attribute {name!r}")
