"""Which table columns (or TFDS features) hold each input."""

from __future__ import annotations

from dataclasses import dataclass

from fusionapp.settings.rules import SettingError, check_fields, column, names, separator

TABULAR_KINDS = ("numeric", "categorical")


@dataclass(frozen=True)
class Columns:
    image: str = column("image")
    text: str = column("text")
    label: str = column("label")
    tabular: tuple[str, ...] = names((), non_empty=False)
    split: str = column("split")
    id: str = column("id")
    # with a multi-label model: what joins the labels of a row in the label column (a JSON list
    # is read as a set too), and in the predicted_labels column of predictions
    label_sep: str = separator("|")

    def __post_init__(self):
        check_fields(self)
        seen = set()
        for spec in self.tabular:
            name, _ = tabular_spec(spec)
            if name in seen:
                raise SettingError("tabular", self.tabular, f"a list of different columns ('{name}' is named twice)")
            if name in (self.label, self.image, self.text):
                raise SettingError("tabular", self.tabular,
                                   f"a list of columns other than the image, text and label columns ('{name}')")
            seen.add(name)

    @property
    def tabular_names(self) -> tuple[str, ...]:
        return tuple(tabular_spec(spec)[0] for spec in self.tabular)

    @property
    def tabular_kinds(self) -> dict[str, str]:
        """Kinds forced with `NAME:numeric` / `NAME:categorical`; the rest are inferred."""
        return {name: kind for name, kind in map(tabular_spec, self.tabular) if kind}


def tabular_spec(spec: str) -> tuple[str, str | None]:
    """`price` -> ("price", None); `zip:categorical` -> ("zip", "categorical")."""
    name, _, kind = spec.rpartition(":")
    if name and kind in TABULAR_KINDS:
        return name, kind
    return spec, None
