"""report.html: one static page, with no script and nothing fetched, that shows the worst rows of each
kind of issue with their image (a thumbnail inside the page), text, given and suggested label."""

from __future__ import annotations

import base64
import html
import io

from fusionapp.audit.findings import KINDS
from fusionapp.runs import files

THUMBNAIL_PX = 112
TEXT_CHARS = 300

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:75em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eee;padding:.4em;vertical-align:top;
text-align:left}th{background:#f6f6f6}.img{width:120px}.img img{max-width:112px;max-height:112px}
.none{color:#999;font-style:italic}.given{color:#c0392b}.suggested{color:#1e8449}.reason{color:#555}
.counts td{padding:.2em 1em .2em 0;border:0}figure{display:inline-block;margin:0 1em 1em 0}
"""


def write_html(path: str, report: dict, by_kind: dict[str, list[dict]], pictures: list[str]) -> None:
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>fusionapp audit of {_e(report['data'])}</title><style>{_STYLE}</style></head><body>",
             f"<h1>Audit of {_e(report['data'])}</h1>",
             f"<p>{report['rows']} rows, {report['labelled']} labelled, {len(report['classes'])} "
             f"{'labels' if report['multi_label'] else 'classes'}; probabilities cross-fitted over "
             f"{report['cross_fit']['folds']} folds of {report['cross_fit']['rows']} rows. "
             f"The full lists are {_e(report['files'][0])} and {_e(report['files'][1])}.</p>",
             "<table class='counts'>"]
    for kind, about in report["kinds"].items():
        parts.append(f"<tr><td><a href='#{kind}'>{kind}</a></td><td>{about['rows']}</td><td>{_e(about['meaning'])}"
                     "</td></tr>")
    if not report["kinds"]:
        parts.append("<tr><td>No issues found.</td></tr>")
    parts.append("</table>")
    parts.extend(f"<figure><img src='{_e(name)}' alt='{_e(name)}'></figure>" for name in pictures)
    for kind in KINDS:
        if kind in by_kind:
            parts.append(_section(kind, by_kind[kind], report["kinds"][kind]["rows"]))
    parts.append("</body></html>\n")
    files.write_text(path, "".join(parts))


def _section(kind: str, issues: list[dict], total: int) -> str:
    rows = [f"<h2 id='{kind}'>{kind}: {_e(KINDS[kind])} ({len(issues)} of {total} shown)</h2>",
            "<table><tr><th>row</th><th class='img'>image</th><th>text</th><th>label</th><th>why</th></tr>"]
    for issue in issues:
        rows.append(_row(issue))
        if issue["other"] is not None:
            rows.append(_row({**issue["other"], "id": "", "split": "", "suggested": "", "score": None,
                              "reason": f"(the other row of row {issue['row']})", "other": None}))
    rows.append("</table>")
    return "".join(rows)


def _row(issue: dict) -> str:
    example = issue.get("example") or {}
    label = f"<span class='given'>{_e(issue['given']) or '<i>none</i>'}</span>"
    if issue.get("suggested"):
        label += f"<br>&rarr; <span class='suggested'>{_e(issue['suggested'])}</span>"
    where = f"{issue['row']}" + (f"<br>{_e(issue['id'])}" if issue.get("id") else "") + (
        f"<br><small>{_e(issue['split'])}</small>" if issue.get("split") else "")
    return (f"<tr><td>{where}</td><td class='img'>{_thumbnail(example)}</td><td>{_text(example)}</td>"
            f"<td>{label}</td><td class='reason'>{_e(issue['reason'])}</td></tr>")


def _text(example: dict) -> str:
    text = example.get("text")
    if text is None:
        return "<span class='none'>-</span>"
    if not text.strip():
        return "<span class='none'>(empty)</span>"
    return _e(text[:TEXT_CHARS] + ("..." if len(text) > TEXT_CHARS else ""))


def _thumbnail(example: dict) -> str:
    from PIL import Image

    source = example.get("image")
    if not source:
        return "<span class='none'>-</span>"
    try:
        with Image.open(source if example.get("image_is_file", True) else io.BytesIO(source)) as image:
            image.draft("RGB", (THUMBNAIL_PX * 2, THUMBNAIL_PX * 2))
            picture = image.convert("RGB")
            picture.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            buffer = io.BytesIO()
            picture.save(buffer, format="JPEG", quality=80)
    except (OSError, ValueError, Image.DecompressionBombError):
        return "<span class='none'>(unreadable)</span>"
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img alt='row image' src='data:image/jpeg;base64,{encoded}'>"


def _e(value) -> str:
    return html.escape(str(value), quote=True)
