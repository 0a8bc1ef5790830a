"""The run report: one Markdown file next to its figures, and one self-contained HTML file.

The HTML embeds every PNG as a base64 data URI because the KFP UI shows an HTML artifact as a
single file, with no way to fetch images beside it. Every text value (metric names, labels, the
title) is escaped: metric names and dataset paths come from users.
"""

from __future__ import annotations

import base64
import html
import math
import mimetypes
import shutil
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dec_lib.errors import DataError

__all__ = ["format_value", "write_report"]

MARKDOWN_NAME = "report.md"
HTML_NAME = "report.html"

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 1.5em auto;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 2px 10px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
"""


def format_value(value: Any) -> str:
    """A metric as a reader wants it: whole numbers without decimals, others to 4 places."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.1f}"


def _md(text: Any) -> str:
    """Text for a Markdown table cell: HTML-escaped (Markdown passes raw HTML on) and no pipes."""
    return html.escape(str(text)).replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(_md(h) for h in header) + " |",
             "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    return lines


def _html_table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _collect_figures(out_dir: Path, figures: Mapping[str, str | Path]) -> list[tuple[str, Path]]:
    """Each figure as a file in ``out_dir`` (copied there if elsewhere), so relative links work."""
    placed: list[tuple[str, Path]] = []
    taken: set[str] = set()
    for name, source in figures.items():
        source = Path(source)
        if not source.is_file():
            raise DataError(source, f"figure {name!r} not found")
        target = out_dir / source.name
        if source.name in taken:
            target = out_dir / f"{len(placed)}-{source.name}"
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        taken.add(target.name)
        placed.append((name, target))
    return placed


def _size_rows(cluster_sizes: Sequence[int], mapping: Mapping[Any, Any] | None
               ) -> tuple[list[str], list[list[Any]]]:
    total = sum(int(s) for s in cluster_sizes) or 1
    mapped = {int(c): label for c, label in (mapping or {}).items()}
    header = ["cluster", *(["label"] if mapped else []), "images", "share"]
    rows = [[c, *([mapped.get(c, "-")] if mapped else []), f"{int(s):,}", f"{int(s) / total:.1%}"]
            for c, s in enumerate(cluster_sizes)]
    return header, rows


def write_report(out_dir: str | Path, metrics: Mapping[str, Any],
                 figures: Mapping[str, str | Path], cluster_sizes: Sequence[int],
                 confusion: Sequence[Sequence[int]] | None = None,
                 title: str = "DEC clustering report", *,
                 labels: Sequence[Any] | None = None,
                 mapping: Mapping[Any, Any] | None = None) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``out_dir``; return their paths.

    ``figures`` maps a caption to a PNG file, shown in that order; files outside ``out_dir`` are
    copied in, so the Markdown's relative links resolve. ``confusion`` is the square
    true label × mapped label matrix of ``metrics.evaluate_clustering`` (rows and columns named
    by ``labels``); ``mapping`` (cluster -> label) adds a label column to the sizes table.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    placed = _collect_figures(out_dir, figures)
    metric_rows = [[name, format_value(value)] for name, value in metrics.items()]
    size_header, size_rows = _size_rows(cluster_sizes, mapping)
    confusion_table = None
    if confusion is not None:
        names = list(labels) if labels is not None else list(range(len(confusion)))
        if len(names) != len(confusion):
            raise DataError("confusion", f"{len(names)} labels for {len(confusion)} rows")
        confusion_table = (["true \\ predicted", *names],
                           [[name, *(f"{int(v):,}" for v in row)]
                            for name, row in zip(names, confusion, strict=True)])

    md = [f"# {_md(title)}", "", "## Metrics", "",
          *(_md_table(["metric", "value"], metric_rows) if metric_rows else ["No metrics."]), ""]
    if placed:
        md += ["## Figures", ""]
        for name, path in placed:
            md += [f"### {_md(name)}", "", f"![{_md(name)}]({urllib.parse.quote(path.name)})", ""]
    md += ["## Cluster sizes", "", *_md_table(size_header, size_rows), ""]
    if confusion_table:
        md += ["## Confusion matrix (true label × predicted label)", "",
               *_md_table(*confusion_table), ""]
    markdown_path = out_dir / MARKDOWN_NAME
    markdown_path.write_text("\n".join(md), encoding="utf-8")

    body = [f"<h1>{html.escape(title)}</h1>", "<h2>Metrics</h2>",
            _html_table(["metric", "value"], metric_rows) if metric_rows else "<p>No metrics.</p>"]
    if placed:
        body.append("<h2>Figures</h2>")
        for name, path in placed:
            mime = mimetypes.guess_type(path.name)[0] or "image/png"
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            caption = html.escape(name)
            body.append(f'<figure><img src="data:{mime};base64,{data}" alt="{caption}">'
                        f"<figcaption>{caption}</figcaption></figure>")
    body += ["<h2>Cluster sizes</h2>", _html_table(size_header, size_rows)]
    if confusion_table:
        body += ["<h2>Confusion matrix (true label × predicted label)</h2>",
                 _html_table(*confusion_table)]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    html_path = out_dir / HTML_NAME
    html_path.write_text(page, encoding="utf-8")
    return markdown_path, html_path
