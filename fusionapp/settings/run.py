"""Everything `fusionapp train` resolves, saved as config.json beside the model and rebuilt from it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from fusionapp.settings.columns import Columns
from fusionapp.settings.model import ModelSettings, TextSettings
from fusionapp.settings.conditions import IMAGE
from fusionapp.settings.rules import SettingError, check_fields, folder
from fusionapp.settings.training import TrainingSettings

@dataclass(frozen=True)
class RunSettings:
    columns: Columns = field(default_factory=Columns)
    model: ModelSettings = field(default_factory=ModelSettings)
    text: TextSettings = field(default_factory=TextSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    # evaluate and predict read the run's tables against it too, unless given another
    image_root: str | None = folder(None, applies=IMAGE, metavar="DIR",
                                    help="Folder that relative image paths resolve against.",
                                    default_words="the table's own folder")

    def __post_init__(self):
        check_fields(self)
        training = self.training
        if training.data_service and self.model.starts_pretrained and training.feature_cache:
            raise SettingError("feature_cache", True, "off with --data-service (its workers read the rows): "
                               "--no-feature-cache")
        if training.text_lora and training.fine_tune_text:
            raise SettingError("text_lora", training.text_lora, "0 with --fine-tune-text: the text backbone is "
                               "tuned one way, its top layers or LoRA adapters")

    @property
    def features_only(self) -> bool:
        """Whether the network trains on cached backbone features alone, never on images."""
        return ((self.model.pretrained or bool(self.model.image_text_backbone)) and self.training.feature_cache
                and not self.training.fine_tune)

    def resolved(self, modalities) -> "RunSettings":
        """The settings with their "auto" values decided for a model of these modalities (what
        config.json records). A value given for a setting that does not apply to these modalities
        is refused by fusionapp.settings.check_applies, not here."""
        model = dataclasses.replace(self.model, modalities=tuple(modalities)).resolved()
        training = self.training
        if not {"image", "text"} <= set(modalities):
            training = dataclasses.replace(training, modality_dropout=0.0)
        if training.augment is None:
            training = dataclasses.replace(training, augment="image" in modalities and not self.features_only)
        return dataclasses.replace(self, model=model, text=self.text.resolved(model.text_encoder), training=training)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "RunSettings":
        return cls(
            columns=settings_from_dict(Columns, values.get("columns", {})),
            model=settings_from_dict(ModelSettings, values.get("model", {})),
            text=settings_from_dict(TextSettings, values.get("text", {})),
            training=settings_from_dict(TrainingSettings, values.get("training", {})),
            image_root=values.get("image_root"),
        )


# What a dict saved before a setting existed meant by leaving it out, where that differs from
# today's default: models of fusionapp 0.3.0 have no wide path, those before 0.5.0 no temperature.
ABSENT_FROM_SAVED = {ModelSettings: {"wide": False, "calibrate": False}}
# Settings saved under an older name: 0.6 called the pixel cache `cache`.
RENAMED_IN_SAVED = {TrainingSettings: {"cache": "pixel_cache"}}


def settings_from_dict(cls, values: dict):
    """Build a settings dataclass from a saved dict; names a newer fusionapp wrote are ignored."""
    known = {f.name for f in dataclasses.fields(cls)}
    renamed = RENAMED_IN_SAVED.get(cls, {})
    values = {**ABSENT_FROM_SAVED.get(cls, {}), **{renamed.get(name, name): value for name, value in values.items()}}
    return cls(**{name: value for name, value in values.items() if name in known})
