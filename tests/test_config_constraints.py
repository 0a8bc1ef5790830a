"""Constraints: each one checks a value and describes what it allows, from one declaration."""

from __future__ import annotations

import dataclasses

import pytest

from dec_lib.config.constraints import Interval, ListOf, OneOf, Text, setting


@pytest.mark.parametrize(("closed", "text", "inside"), [
    ("both", "[0, 1]", [0, 0.5, 1]),
    ("left", "[0, 1)", [0, 0.5]),
    ("right", "(0, 1]", [0.5, 1]),
    ("neither", "(0, 1)", [0.5]),
])
def test_an_interval_says_which_ends_it_includes(closed, text, inside):
    interval = Interval(0, 1, closed=closed)
    assert interval.describe() == text
    assert [v for v in (-1, 0, 0.5, 1, 2) if interval.problem(v) is None] == inside
    assert interval.problem(2) == f"must be in {text}"


def test_large_bounds_are_written_with_thousands_separators():
    assert Interval(0, 4_294_967_295).describe() == "[0, 4,294,967,295]"


def test_one_of_lists_the_words_as_a_sentence():
    assert OneOf(("sgd", "adam")).problem("rmsprop") == "must be 'sgd' or 'adam'"
    assert OneOf(("auto", "acc", "silhouette")).describe() == "'auto', 'acc' or 'silhouette'"
    assert OneOf(("sgd", "adam")).problem("adam") is None


def test_a_list_is_checked_for_its_length_then_its_items():
    layers = ListOf(Interval(1, 16), Interval(1, 100_000), noun="layer", unit="units")
    assert layers.problem([]) == "needs 1 to 16 layers"
    assert layers.problem([8, 0]) == "every layer needs 1 to 100,000 units"
    assert layers.problem([8, 4]) is None
    assert layers.describe() == "1 to 16 layers of 1 to 100,000 units"


def test_text_must_be_present_and_short():
    text = Text(10, names="'mnist' or a path")
    assert text.problem("  ") == "must name 'mnist' or a path"
    assert text.problem("x" * 11) == "must be at most 10 characters"
    assert text.problem("mnist") is None


def test_setting_keeps_doc_and_constraint_and_copies_a_list_default():
    @dataclasses.dataclass
    class Section:
        dims: list[int] = setting([1, 2], "Some   dims.", None)  # noqa: RUF009

    (f,) = dataclasses.fields(Section)
    assert f.metadata["doc"] == "Some dims." and f.metadata["constraint"] is None
    a, b = Section(), Section()
    a.dims.append(3)
    assert b.dims == [1, 2]
