"""The README's table of settings is generated from the declarations, and kept current."""

from __future__ import annotations

from pathlib import Path

import pytest

from dec_lib.config.sections import declared_settings
from dec_lib.config.table import BEGIN, END, main, markdown_table, update_readme

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_table_is_the_generated_one():
    text = README.read_text(encoding="utf-8")
    assert update_readme(text) == text, "run: python -m dec_lib.config.table"


def test_the_table_has_one_row_per_setting_with_its_doc():
    rows = markdown_table().splitlines()[2:]
    assert len(rows) == len(declared_settings())
    for row, item in zip(rows, declared_settings(), strict=True):
        assert row.startswith(f"| `{item.key}` |") and item.doc in row


def test_the_generator_rewrites_a_stale_table_and_check_reports_it(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\n| stale |\n{END}\n\nafter\n", encoding="utf-8")
    assert main([str(readme), "--check"]) == 1
    assert main([str(readme)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert "| stale |" not in text and text.endswith(f"{END}\n\nafter\n")
    assert main([str(readme), "--check"]) == 0


def test_a_readme_without_the_markers_is_refused():
    with pytest.raises(ValueError, match="settings table"):
        update_readme("# no markers here\n")
