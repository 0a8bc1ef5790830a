"""The one converter: command-line text is read, parsed values are checked as written."""

from __future__ import annotations

import pytest

from dec_lib.config.convert import FALSE_WORDS, NONE_WORDS, TRUE_WORDS, convert, type_name
from dec_lib.errors import ConfigError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("Yes", True), ("on", True), ("1", True), (True, True),
     ("false", False), ("NO", False), ("off", False), ("0", False), (False, False)],
)
def test_bool_values_are_read_from_the_usual_words(raw, expected):
    assert convert("some.flag", raw, bool, from_text=True) is expected


@pytest.mark.parametrize("raw", ["maybe", "2", 2.0])
def test_other_values_for_a_bool_are_refused_naming_the_key(raw):
    with pytest.raises(ConfigError) as info:
        convert("some.flag", raw, bool, from_text=True)
    assert info.value.key == "some.flag"


def test_the_words_for_none_true_and_false_do_not_overlap():
    assert not NONE_WORDS & TRUE_WORDS and not NONE_WORDS & FALSE_WORDS
    assert not TRUE_WORDS & FALSE_WORDS


@pytest.mark.parametrize(("text", "hint", "expected"), [
    ("5", int, 5), (" 5 ", int, 5), ("1e3", int, 1000), ("5.0", int, 5),
    ("1e-4", float, 1e-4), ("3", float, 3.0),
    ("none", int | None, None), ("", int | None, None), ("~", int | None, None),
    ("7", int | None, 7),
    ("[8, 4]", list[int], [8, 4]), ("8,4", list[int], [8, 4]), ("[]", list[int], []),
    ("none", str, "none"),
])
def test_text_is_read_as_the_declared_type(text, hint, expected):
    value = convert("k", text, hint, from_text=True)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(("text", "hint"), [
    ("5.5", int), ("x", int), ("true", int), ("nan", float), ("-inf", float),
    ("9" * 5000, int), ("[8,x]", list[int]),
])
def test_unreadable_text_is_refused_naming_the_key(text, hint):
    with pytest.raises(ConfigError, match="cannot read") as info:
        convert("k", text, hint, from_text=True)
    assert info.value.key == "k" and len(str(info.value)) < 300


@pytest.mark.parametrize(("value", "hint", "message"), [
    ("50", int, "expected an integer, got '50'"),
    (2.5, int, "expected an integer, got 2.5"),
    (True, int, "expected an integer, got True"),
    ("0.1", float, "expected a finite number, got '0.1'"),
    (10**400, float, "expected a finite number"),
    (float("nan"), float, "expected a finite number"),
    (False, str, "quote it"),
    (5, str, "expected text, got 5"),
    (1, bool, "expected true or false, got 1"),
    (500, list[int], "expected a list, got 500"),
])
def test_parsed_values_are_checked_as_written_not_read_as_text(value, hint, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        convert("k", value, hint)


def test_parsed_numbers_become_the_declared_type():
    np = pytest.importorskip("numpy")
    assert type(convert("k", 40.0, int)) is int
    assert type(convert("k", np.int64(3), int)) is int
    assert type(convert("k", 0, float)) is float
    assert convert("k", "NULL", int | None) is None


@pytest.mark.parametrize(("hint", "words"), [
    (int, "integer"), (float, "number"), (bool, "true/false"), (str, "text"),
    (int | None, "integer or none"), (list[int], "list of integers"),
])
def test_type_names_are_words(hint, words):
    assert type_name(hint) == words
