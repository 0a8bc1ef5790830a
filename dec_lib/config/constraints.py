"""What a setting may hold, declared with it, as in scikit-learn's ``_parameter_constraints``.

A constraint answers two questions from one declaration: is this value allowed (the problem, in
words, for the error message) and what is allowed (for ``config show`` and the README's table).
``setting`` puts a field's default, doc and constraint into one ``dataclasses.field``, so each
fact about a setting is written once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["Constraint", "Interval", "ListOf", "OneOf", "Text", "setting"]


class Constraint(Protocol):
    """What every constraint offers: a check that explains itself, and a description."""

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` ("must be in [0, 1]"), or None when it is allowed."""

    def describe(self) -> str:
        """The allowed values in a few words, for documentation."""


def _number(value: float) -> str:
    return f"{value:,}"


@dataclass(frozen=True)
class Interval:
    """Numbers from ``low`` to ``high``; ``closed`` says which ends are included.

    Parameters
    ----------
    low, high : float
        The ends of the interval.
    closed : {"both", "left", "right", "neither"}, default="both"
        Which ends belong to it: a learning rate of 0 trains nothing (``"right"``), a momentum of
        1 never forgets (``"left"``).
    """

    low: float
    high: float
    closed: Literal["both", "left", "right", "neither"] = "both"

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the interval."""
        above = value >= self.low if self.closed in ("both", "left") else value > self.low
        below = value <= self.high if self.closed in ("both", "right") else value < self.high
        return above and below

    def problem(self, value: Any) -> str | None:
        """``"must be in [low, high]"`` when ``value`` lies outside, else None."""
        return None if self.contains(value) else f"must be in {self.describe()}"

    def describe(self) -> str:
        """The interval in the usual notation: ``[0, 1)`` includes 0 and excludes 1."""
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        return f"{left}{_number(self.low)}, {_number(self.high)}{right}"


@dataclass(frozen=True)
class OneOf:
    """One of a few words, such as ``OPTIMIZERS``.

    Parameters
    ----------
    values : tuple of str
        The allowed words, in the order the documentation lists them.
    """

    values: tuple[str, ...]

    def problem(self, value: Any) -> str | None:
        """``"must be 'sgd' or 'adam'"`` when ``value`` is not one of the words, else None."""
        return None if value in self.values else f"must be {self.describe()}"

    def describe(self) -> str:
        """The words quoted and joined: ``'auto', 'acc' or 'silhouette'``."""
        quoted = [repr(v) for v in self.values]
        return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


@dataclass(frozen=True)
class ListOf:
    """A list of ``length`` items (an interval of counts), each within ``item``.

    Parameters
    ----------
    length : Interval
        How many items the list may hold.
    item : Interval
        The range of each item.
    noun, unit : str
        What an item is and what it counts, for messages: "every layer needs 1 to 100,000 units".
    """

    length: Interval
    item: Interval
    noun: str
    unit: str

    def problem(self, value: Sequence[float]) -> str | None:
        """What is wrong with the length, else with an item; None when the list is allowed."""
        if not self.length.contains(len(value)):
            return f"needs {self._span(self.length)} {self.noun}s"
        if not all(self.item.contains(v) for v in value):
            return f"every {self.noun} needs {self._span(self.item)} {self.unit}"
        return None

    def describe(self) -> str:
        """``1 to 16 layers of 1 to 100,000 units``."""
        return f"{self._span(self.length)} {self.noun}s of {self._span(self.item)} {self.unit}"

    @staticmethod
    def _span(interval: Interval) -> str:
        return f"{_number(interval.low)} to {_number(interval.high)}"


@dataclass(frozen=True)
class Text:
    """Text that is not blank and at most ``max_length`` characters long.

    Parameters
    ----------
    max_length : int
        Longest text allowed: a path or URI, not a document.
    names : str
        What the text must name, for the message given when it is blank.
    """

    max_length: int
    names: str

    def problem(self, value: str) -> str | None:
        """What is wrong with ``value``: blank, or too long; None when it is allowed."""
        if not value.strip():
            return f"must name {self.names}"
        if len(value) > self.max_length:
            return f"must be at most {self.max_length} characters"
        return None

    def describe(self) -> str:
        """``'mnist' or a path (at most 4096 characters)``."""
        return f"{self.names} (at most {self.max_length} characters)"


def setting(default: Any, doc: str, constraint: Constraint | None) -> Any:
    """A dataclass field carrying its doc and constraint, so a setting is declared in one place.

    Parameters
    ----------
    default : object
        The field's default. A list is copied for every instance, as ``default_factory`` would.
    doc : str
        What the setting does, in one or two sentences of Markdown (single backticks for code):
        shown by ``config show`` and in the README's table.
    constraint : Constraint or None
        The values allowed; None where the type alone says what is (true/false). A value of
        None is allowed exactly when the field's type is ``X | None``.

    Returns
    -------
    dataclasses.Field
        The field, with ``doc`` and ``constraint`` in its ``metadata``.
    """
    metadata = {"doc": " ".join(doc.split()), "constraint": constraint}
    if isinstance(default, list):
        items = tuple(default)
        return dataclasses.field(default_factory=lambda: list(items), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)
