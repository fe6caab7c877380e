"""The documentation site builds without a warning: its links hold, and its command-line reference is
generated from the click commands themselves (mkdocs-click), so it cannot drift from --help."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.integration
def test_the_site_builds_strictly_with_the_cli_reference_generated(tmp_path):
    pytest.importorskip("mkdocs")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert not _remote_loads(tmp_path / "site")
    reference = (tmp_path / "site" / "cli" / "index.html").read_text(encoding="utf-8")
    # the group's example lines stay lines: a code block, not a paragraph
    assert re.search(r"<pre>(?:(?!</pre>).)*# demo data, a few minutes on a laptop CPU", reference, re.S)
    from fusionapp.cli import cli

    for name, command in cli.commands.items():
        if not command.hidden:
            assert f"fusionapp {name}" in reference, name
    for command in cli.commands.values():
        for param in command.params:
            if not getattr(param, "hidden", False):
                assert all(option in reference for option in getattr(param, "opts", []) if option.startswith("--"))


# What makes a browser fetch something while it shows a page: scripts, stylesheets, preconnects,
# fonts, images, and CSS imports. A link a reader may follow is not one.
_FETCHES = re.compile(r"<(?:script|img|iframe)[^>]*\ssrc=[\"'](?:https?:)?//|<link[^>]*\shref=[\"'](?:https?:)?//"
                      r"|url\([\"']?(?:https?:)?//|@import\s+[\"'](?:https?:)?//", re.IGNORECASE)


def _remote_loads(site: Path) -> list[str]:
    """Every place in the built site that makes a browser ask another host for something."""
    found = []
    for path in site.rglob("*"):
        if path.suffix in (".html", ".css", ".js"):
            text = path.read_text(encoding="utf-8", errors="replace")
            found += [f"{path.relative_to(site)}: {match.group(0)}" for match in _FETCHES.finditer(text)]
    return found


def test_the_readme_stays_a_landing_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250
    assert "pip install -e ." in "\n".join(lines) and 'pip install -e ".[test]" && python -m pytest' in "\n".join(lines)
