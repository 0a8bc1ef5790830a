"""Exception types, one per kind of user mistake.

Every message names the file or setting at fault and what would fix it, so the CLI can print the
message as the single line a user sees.
"""

from __future__ import annotations

import reprlib

_SHORT = reprlib.Repr()  # its constructor takes these as arguments only from Python 3.12
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxlong, _SHORT.maxother = 2, 60, 40, 60
_SHORT.maxtuple = _SHORT.maxlist = _SHORT.maxarray = _SHORT.maxdict = _SHORT.maxset = 4
_SHORT.maxfrozenset = _SHORT.maxdeque = 4


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for error messages.

    A message quotes the value at fault so the user recognises it; a full ``repr`` of a value
    read from a file can be megabytes (a YAML alias bomb expands to a billion items), and the
    one line a user sees must stay one line. ``reprlib`` never walks more than a few items.
    """
    return short_text(_SHORT.repr(value), limit)


def short_text(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis: tags and error lines stay short."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


class DecError(Exception):
    """Base class of every error this project raises on purpose."""


class DataError(DecError, ValueError):
    """Input data that cannot be used: missing, corrupt, truncated, mis-shaped or non-finite."""

    def __init__(self, source: object, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class ConfigError(DecError, ValueError):
    """A setting that is unknown, unparsable or impossible."""

    def __init__(self, key: str, problem: str):
        self.key = key
        self.problem = problem
        super().__init__(f"setting {short_repr(key)}: {problem}")


class NotFittedError(DecError, AttributeError):
    """A model used for prediction before it was fitted or loaded."""


class TrackingError(DecError, RuntimeError):
    """MLflow could not be reached or refused an operation after retries."""


class DeviceError(DecError, RuntimeError):
    """A step placed on GPUs where TensorFlow sees fewer of them: a driver or image problem."""
