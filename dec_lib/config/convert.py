"""The one converter from a value as given to the type its setting declares.

Values arrive in two forms. Text typed on the command line (``--set pretrain.epochs=50``) is read:
``"50"`` becomes 50, ``"none"`` becomes None, ``"64,32"`` a list. Values already parsed by YAML,
TOML or JSON (files, KFP struct parameters, dicts in code) are checked as written and never read
as text: ``epochs: "50"`` in a file is a mistake worth reporting, not guessing around. Both forms
share one set of words for none, true and false, so a file and ``--set`` agree.
"""

from __future__ import annotations

import math
import numbers
import types
import typing
from typing import Any

from dec_lib.errors import ConfigError, short_repr

__all__ = ["FALSE_WORDS", "NONE_WORDS", "TRUE_WORDS", "convert", "type_name"]

NONE_WORDS = frozenset({"none", "null", "~", ""})
"""Text meaning "no value" for a setting that may be none (any case): TOML has no null."""
TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
"""Text read as true for a true/false setting given on the command line (any case)."""
FALSE_WORDS = frozenset({"false", "no", "off", "0"})
"""Text read as false for a true/false setting given on the command line (any case)."""

_NAMES = {int: "an integer", float: "a finite number", bool: "true or false", str: "text"}


def type_name(hint: Any) -> str:
    """A setting's type in words, for documentation: ``integer or none``, ``list of integers``.

    Parameters
    ----------
    hint : type
        The field's type, as ``typing.get_type_hints`` gives it.

    Returns
    -------
    str
        The type in words.
    """
    words = {int: "integer", float: "number", bool: "true/false", str: "text"}
    if _optional_of(hint) is not None:
        return f"{type_name(_optional_of(hint))} or none"
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return f"list of {type_name(item)}s"
    return words[hint]


def _optional_of(hint: Any) -> Any:
    """``X`` for a hint ``X | None``, else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0]
    return None


def convert(key: str, value: Any, hint: Any, *, from_text: bool = False) -> Any:
    """``value`` as the type ``hint`` of the setting ``key``, or a ``ConfigError`` naming the key.

    Parameters
    ----------
    key : str
        The dotted key, named by every error.
    value : object
        The value as given.
    hint : type
        The field's type: ``int``, ``float``, ``bool``, ``str``, ``list[X]`` or ``X | None``.
    from_text : bool, default=False
        Whether a string is command-line text to be read (``"5"`` is 5, ``"32,16"`` a list).
        Otherwise a string is accepted only where the setting is text, or as a none word; a
        number is accepted for an integer only when it is integral, as JSON hands over 40.0.

    Returns
    -------
    object
        The converted value: an ``int`` setting always gets an ``int``, a ``float`` a finite
        ``float``.

    Raises
    ------
    ConfigError
        Naming ``key`` and quoting (briefly) the value that could not be converted.
    """
    inner = _optional_of(hint)
    if inner is not None:
        if value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS):
            return None
        return convert(key, value, inner, from_text=from_text)
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        if from_text and isinstance(value, str):
            value = [part for part in value.strip().strip("[]").split(",") if part.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"expected a list, got {short_repr(value)}")
        return [convert(key, part, item, from_text=from_text) for part in value]
    if hint not in _NAMES:
        raise ConfigError(key, f"unsupported type {hint!r}")
    if from_text and isinstance(value, str) and hint is not str:
        return _read_text(key, value, hint)
    converted = _as_parsed(value, hint)
    if converted is None:
        quote = " (quote it: YAML reads yes/no/on/off as true/false)" if (
            hint is str and isinstance(value, bool)) else ""
        raise ConfigError(key, f"expected {_NAMES[hint]}, got {short_repr(value)}{quote}")
    return converted


def _as_parsed(value: Any, hint: type) -> Any:
    """``value`` as ``hint`` when its parsed type already is one (None when it is not)."""
    is_bool = isinstance(value, bool)
    if hint is bool:
        return value if is_bool else None
    if hint is str:
        return value if isinstance(value, str) else None
    if is_bool or not isinstance(value, numbers.Real):
        return None
    if hint is int and isinstance(value, numbers.Integral):
        return int(value)
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float's range
        return None
    if not math.isfinite(number):
        return None
    if hint is int:
        return int(number) if number.is_integer() else None
    return number


def _read_text(key: str, text: str, hint: type) -> Any:
    """Command-line ``text`` read as ``hint`` (int, float or bool)."""
    word = text.strip()
    if hint is bool:
        if word.lower() in TRUE_WORDS | FALSE_WORDS:
            return word.lower() in TRUE_WORDS
    else:
        try:
            number = int(word) if hint is int and _is_integer_text(word) else float(word)
        except ValueError:
            number = None
        if number is not None:
            converted = _as_parsed(number, hint)
            if converted is not None:
                return converted
    raise ConfigError(key, f"cannot read {short_repr(text)} as {_NAMES[hint]}")


def _is_integer_text(word: str) -> bool:
    """Whether ``word`` is written as an integer (so read exactly, not through a float)."""
    digits = word[1:] if word[:1] in "+-" else word
    return digits.replace("_", "").isdigit()
