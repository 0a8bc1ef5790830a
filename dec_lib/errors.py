"""Exception types, one per kind of user mistake.

Every message names the file or setting at fault and what would fix it, so the CLI can print the
message as the single line a user sees.
"""

from __future__ import annotations


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
        super().__init__(f"setting {key!r}: {problem}")


class NotFittedError(DecError, AttributeError):
    """A model used for prediction before it was fitted or loaded."""


class TrackingError(DecError, RuntimeError):
    """MLflow could not be reached or refused an operation after retries."""


class DeviceError(DecError, RuntimeError):
    """A step placed on GPUs where TensorFlow sees fewer of them: a driver or image problem."""
