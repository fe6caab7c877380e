"""fusionapp: image + text (+ tabular) classifiers you can train, evaluate and serve."""

__version__ = "0.6.0"

# The Python API is imported lazily so `import fusionapp` (and `fusionapp --help`) stays fast:
# TensorFlow is only loaded when one of these functions is first used.
_API = {
    "train": "fusionapp.training",
    "evaluate": "fusionapp.evaluation",
    "predict": "fusionapp.prediction",
    "make_demo": "fusionapp.data.demo",
}


def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'fusionapp' has no attribute {name!r}")
