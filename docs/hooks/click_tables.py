"""MkDocs hook: tidy the option tables that mkdocs-click writes into cli.md.

mkdocs-click 0.9 (with `:style: table`) has two problems with fusionapp's commands:

- Click 8.2 and later mark an option without a default with the `UNSET` sentinel, which
  mkdocs-click prints as `Sentinel.UNSET` in the Default column, and `train`'s settings default
  to None on the command line (a flag not given leaves the config file's value or the setting's
  default), which it prints as `None`. fusionapp states each default in the option's help text
  instead, so these cells are left empty.
- A `|` in an option's help text (`--label-sep`, `--multi-label`) is copied as is and splits the
  table row. It is escaped here.
- A docstring's example lines (click's `\b` blocks, which keep their lines in --help) lose the
  `\b` and run together into one paragraph. A run of lines starting with `fusionapp ` outside a
  code block is put in a `bash` code block here.

The fix is a Markdown preprocessor that runs just after mkdocs-click's own (priority 141) and
rewrites only the option rows it generated; any other line is left alone. This file lives under
docs/ but is excluded from the site (`exclude_docs` in mkdocs.yml).
"""

from __future__ import annotations

import re

from markdown.extensions import Extension
from markdown.preprocessors import Preprocessor

# | `--name`[, `-n`][ / `--no-name`] | type | description | default |
_ROW = re.compile(
    r"^\| (?P<names>`-[^|]*?`) \| (?P<type>[^|]*?) \| (?P<help>.*) \| (?P<default>`[^`]*`|None|_required) \|$"
)
_NO_DEFAULT = {"`Sentinel.UNSET`", "`UNSET`", "None"}


def _tidy(line: str) -> str:
    match = _ROW.match(line)
    if not match:
        return line
    default = "" if match["default"] in _NO_DEFAULT else match["default"]
    description = match["help"].replace("|", "&#x7C;")
    return f"| {match['names']} | {match['type']} | {description} | {default} |"


def _fence_examples(lines: list[str]) -> list[str]:
    """Runs of `fusionapp ...` example lines, outside code blocks, as bash code blocks."""
    out, fenced, examples = [], False, []
    for line in [*lines, ""]:
        if not fenced and line.startswith("fusionapp "):
            examples.append(line)
            continue
        if examples:
            out += ["```bash", *examples, "```"]
            examples = []
        fenced = fenced != line.startswith("```")
        out.append(line)
    return out[:-1]


class _TidyClickTables(Preprocessor):
    def run(self, lines: list[str]) -> list[str]:
        return _fence_examples([_tidy(line) for line in lines])


class _TidyClickTablesExtension(Extension):
    def extendMarkdown(self, md) -> None:  # noqa: N802 (Markdown's name)
        md.preprocessors.register(_TidyClickTables(md), "fusionapp_click_tables", 140)


def on_config(config, **kwargs):
    config.markdown_extensions.append(_TidyClickTablesExtension())
    return config
