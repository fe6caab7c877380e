"""A stand-in for a language written without spaces: a table's texts with every whitespace character
removed, images pointed at by absolute paths, everything else as it was. The copy is written where
you say (never into the repository); `quality.py --suite` builds one from MVSA-Single.

    python benchmarks/nospace.py ../shared/data/mvsa_single/manifest.csv /tmp/mvsa_nospace [--folds]

With `--folds`, a `folds_10.csv` beside the table is copied too (its image paths made absolute).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys

SPACES = re.compile(r"\s+")


def without_spaces(source: str, folder: str, text_col: str = "text", image_col: str = "image",
                   folds: bool = False) -> str:
    """Write `folder`/manifest.csv (and folds_10.csv) and return the table's path."""
    root = os.path.dirname(os.path.abspath(source))
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, "manifest.csv")
    _copy(source, target, lambda row: {**row, text_col: SPACES.sub("", row[text_col]),
                                       image_col: os.path.join(root, row[image_col])})
    if folds:
        _copy(os.path.join(root, "folds_10.csv"), os.path.join(folder, "folds_10.csv"),
              lambda row: {**row, "image": os.path.join(root, row["image"])})
    return target


def _copy(source: str, target: str, change) -> None:
    with open(source, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = [change(row) for row in reader]
        fields = reader.fieldnames
    with open(target, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table")
    parser.add_argument("folder")
    parser.add_argument("--text-col", default="text")
    parser.add_argument("--image-col", default="image")
    parser.add_argument("--folds", action="store_true", help="copy folds_10.csv too")
    args = parser.parse_args(argv)
    print(without_spaces(args.table, args.folder, args.text_col, args.image_col, args.folds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
