"""Which table columns (or TFDS features) hold each input."""

from __future__ import annotations

from dataclasses import dataclass

from fusionapp.settings.rules import SettingError, check_fields, column, names, separator

TABULAR_KINDS = ("numeric", "categorical")
# The columns evaluate and predict may read under other names than the run's (`--text-col body`).
RENAMABLE = ("image", "text", "label", "split", "id")


@dataclass(frozen=True)
class Columns:
    image: str = column("image", flat="image_col", help="Column holding image paths.")
    text: str = column("text", flat="text_col", help="Column holding the text.")
    label: str = column("label", flat="label_col", help="Column holding the label.")
    tabular: tuple[str, ...] = names((), non_empty=False, flat="tabular_col", multiple=True, metavar="NAME",
                                     help="Tabular column, repeatable; NAME:numeric or NAME:categorical forces its "
                                          "kind.")
    split: str = column("split", flat="split_col", help="Column holding train / val / test.")
    id: str = column("id", flat="id_col", help="Column holding row ids, copied into predictions.")
    # A JSON list in the label column is read as a set too.
    label_sep: str = separator("|", help="What joins a row's labels in the label column, and in predictions' "
                                         "predicted_labels; implies --multi-label.")

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
