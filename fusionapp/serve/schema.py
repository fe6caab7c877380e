"""What the server publishes of a run (`/metadata`) and what a request may carry: schemas chosen for
clients, in the manner of Ludwig's serving. They never hold a file path, a serialised architecture,
a tokenizer or the preprocessor's own description; `_preprocessor_facts` is the one place that reads
the preprocessor for them."""

from __future__ import annotations

import os
from dataclasses import dataclass

import fusionapp
from fusionapp.preprocessing.configs import TextInput as TextInputKind
from fusionapp.runs.files import read_json
from fusionapp.runs.layout import METRICS_FILE


@dataclass(frozen=True)
class ImageInput:
    size: int  # images are resized to size x size pixels


@dataclass(frozen=True)
class TextInput:
    max_chars: int | None  # characters of a text the model reads; the rest is cut
    sequence_length: int | None  # tokens the model reads; None: a bag of n-grams, read whole


@dataclass(frozen=True)
class TabularColumn:
    name: str
    kind: str  # "numeric" or "categorical"
    # a categorical column's categories seen in training; any other value counts as unknown
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelInputs:
    image: ImageInput | None  # None: the model takes no image
    text: TextInput | None  # None: the model takes no text
    tabular: tuple[TabularColumn, ...]  # empty: the model takes no tabular values


@dataclass(frozen=True)
class ModelSchema:
    """The public description of a served run: what `GET /metadata` answers (as `json()`)."""

    classes: tuple[str, ...]
    # multi-label: answers carry predicted_labels and thresholds, not predicted_label and confidence
    multi_label: bool
    label_sep: str | None  # multi-label: how the run's label cells join labels; else None
    inputs: ModelInputs
    run: str  # the run folder's name, never its path
    model_version: str | None  # when the run was created (config.json's `created`)
    versions: dict[str, str]  # fusionapp, tensorflow and keras, as this server runs them
    # every number of the run's validation report (metrics.json), None without one
    validation_metrics: dict[str, float] | None

    def json(self) -> dict:
        inputs = {}
        if self.inputs.image:
            inputs["image"] = {"kind": "image", "size": self.inputs.image.size}
        if self.inputs.text:
            inputs["text"] = {"kind": "text", "max_chars": self.inputs.text.max_chars,
                              "sequence_length": self.inputs.text.sequence_length}
        if self.inputs.tabular:
            inputs["tabular"] = {"kind": "tabular", "columns": {
                column.name: {"kind": column.kind, **({"categories": list(column.categories)}
                                                      if column.kind == "categorical" else {})}
                for column in self.inputs.tabular}}
        metrics = self.validation_metrics or {}
        return {"classes": list(self.classes), "multi_label": self.multi_label, "label_sep": self.label_sep,
                "inputs": inputs, "run": self.run, "model_version": self.model_version, "versions": self.versions,
                "validation_metrics": self.validation_metrics,
                # the headline figure of each kind of run, as fusionapp 0.11 published them
                "validation_accuracy": None if self.multi_label else metrics.get("accuracy"),
                "validation_micro_f1": metrics.get("micro_f1") if self.multi_label else None}


@dataclass(frozen=True)
class RequestSchema:
    """What one request item may carry, derived from the public schema: the inputs the model takes."""

    image: bool
    text: bool
    tabular: tuple[str, ...]  # column names

    @classmethod
    def of(cls, schema: ModelSchema) -> "RequestSchema":
        inputs = schema.inputs
        return cls(inputs.image is not None, inputs.text is not None, tuple(c.name for c in inputs.tabular))

    def names(self) -> str:
        """The inputs, in words, for error messages."""
        return ", ".join(name for name, taken in (("image", self.image), ("text", self.text),
                                                  ("tabular", self.tabular)) if taken)


def model_schema(run) -> ModelSchema:
    """The public schema of a loaded run."""
    import keras
    import tensorflow as tf

    classes, multi_label, label_sep, inputs = _preprocessor_facts(run.preprocessor)
    return ModelSchema(
        classes=classes, multi_label=multi_label, label_sep=label_sep, inputs=inputs,
        run=os.path.basename(os.path.abspath(run.path)), model_version=run.config.get("created"),
        versions={"fusionapp": fusionapp.__version__, "tensorflow": tf.__version__, "keras": keras.__version__},
        validation_metrics=_validation_metrics(run.path))


def model_metadata(run) -> dict:
    """What `GET /metadata` answers for a loaded run."""
    return model_schema(run).json()


def _preprocessor_facts(preprocessor) -> tuple[tuple[str, ...], bool, str | None, ModelInputs]:
    """(classes, multi-label, label separator, inputs): everything the schema reads from the
    preprocessor, read here only."""
    modalities = preprocessor.modalities
    image = ImageInput(preprocessor.image_size) if "image" in modalities else None
    text = None
    if "text" in modalities:
        config = preprocessor.text
        # a bag of n-grams reads the whole text; token ids and backbones read this many tokens
        length = config.sequence_length if config.input != TextInputKind.TF_IDF else None
        text = TextInput(config.max_chars, length)
    tabular = ()
    if "tabular" in modalities:
        tabular = tuple(TabularColumn(column.name, column.kind, tuple(column.categories or ()))
                        for column in preprocessor.tabular)
    return (tuple(preprocessor.class_names), preprocessor.multi_label, preprocessor.label_sep,
            ModelInputs(image, text, tabular))


def _validation_metrics(run_dir: str) -> dict[str, float] | None:
    path = os.path.join(run_dir, METRICS_FILE)
    if not os.path.exists(path):
        return None
    return {name: value for name, value in read_json(path).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}
