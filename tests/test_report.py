"""The report: Markdown linking its figures, HTML embedding them, every text escaped."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import pytest

from dec_lib.errors import DataError
from dec_lib.reports import figures
from dec_lib.reports.document import format_value, write_report

EVIL = "<script>alert('x')</script>"


@pytest.fixture()
def figure_files(tmp_path):
    elsewhere = tmp_path / "figures"
    return {
        "Cluster sizes": figures.cluster_sizes_png([5, 0, 7], elsewhere / "sizes.png"),
        "Training curves": figures.training_curves_png([1.0, 0.5], [], elsewhere / "curves.png"),
    }


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])
        self.scripts += tag == "script"


def test_html_embeds_every_figure_and_escapes_text(tmp_path, figure_files):
    metrics = {"acc": 0.97551, "n_empty_clusters": 1.0, EVIL: 0.5}
    md_path, html_path = write_report(tmp_path / "out", metrics, figure_files, [5, 0, 7],
                                      confusion=[[5, 0], [2, 5]], labels=[0, 1],
                                      title=f"Run {EVIL}", mapping={"0": 1, "2": 0})
    page = html_path.read_text()
    parser = _Images()
    parser.feed(page)
    assert parser.scripts == 0
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert len(parser.sources) == len(figure_files)
    for source, path in zip(parser.sources, figure_files.values(), strict=True):
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix)
        assert base64.b64decode(source[len(prefix):]) == path.read_bytes()
    assert "src=\"http" not in page and "src=\"./" not in page  # nothing fetched from outside
    assert "<td>0.9755</td>" in page and "<td>1</td>" in page
    assert md_path.read_text().startswith("# Run &lt;script&gt;")


def test_markdown_links_figures_by_relative_name_next_to_it(tmp_path, figure_files):
    out = tmp_path / "out"
    md_path, _ = write_report(out, {EVIL: 1.5, "a|b": 2}, figure_files, [5, 0, 7])
    text = md_path.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links == ["sizes.png", "curves.png"]
    assert all((out / link).read_bytes()[:4] == b"\x89PNG" for link in links)
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "| a\\|b | 2 |" in text  # a pipe would otherwise split the table cell
    assert "| 1 | 0 | 0.0% |" in text  # the empty cluster's row


def test_report_without_figures_labels_or_metrics(tmp_path):
    md_path, html_path = write_report(tmp_path, {}, {}, [10])
    assert "No metrics." in md_path.read_text()
    assert "<img" not in html_path.read_text()


def test_missing_figure_is_named(tmp_path):
    with pytest.raises(DataError, match="figure 'gone' not found"):
        write_report(tmp_path, {}, {"gone": tmp_path / "gone.png"}, [1])


def test_figure_already_in_the_output_folder_is_not_copied_over_itself(tmp_path):
    path = figures.cluster_sizes_png([1, 2], tmp_path / "sizes.png")
    md_path, _ = write_report(tmp_path, {}, {"sizes": path}, [1, 2])
    assert "(sizes.png)" in md_path.read_text()


@pytest.mark.parametrize("value, text", [(0.97551, "0.9755"), (3.0, "3"), (12345.678, "12,345.7"),
                                         (float("nan"), "n/a"), (True, "True"), ("x", "x")])
def test_format_value(value, text):
    assert format_value(value) == text
