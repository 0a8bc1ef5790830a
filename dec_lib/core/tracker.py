"""Where the phases report what they measured: a small protocol, and the tracker that drops it.

The phases know nothing of MLflow. The pipeline's steps hand them
``dec_lib.mlops.tracking.MlflowTracker``; ``DEC.fit`` hands them ``NullTracker`` unless its
caller passes another, so one call reports the same names whichever driver runs it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol


class Tracker(Protocol):
    """Receives a run's parameters, metrics and files."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record settings, once per run.

        Parameters
        ----------
        params : Mapping
            Dotted names (``pretrain.epochs``) to values.
        """

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record measurements, optionally at a step (an epoch, an iteration).

        Parameters
        ----------
        metrics : Mapping
            Dotted names (``dec.loss``) to numbers.
        step : int, optional
            Where in training they were measured.
        """

    def log_artifacts(self, folder: str | os.PathLike, artifact_path: str) -> None:
        """Keep every file in ``folder`` under ``artifact_path``.

        Parameters
        ----------
        folder : str or os.PathLike
            A local folder.
        artifact_path : str
            Where the files go in the run.
        """


class NullTracker:
    """A tracker that keeps nothing: what a notebook's ``DEC.fit`` reports to by default."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Drop ``params``.

        Parameters
        ----------
        params : Mapping
            Ignored.
        """

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Drop ``metrics``.

        Parameters
        ----------
        metrics : Mapping
            Ignored.
        step : int, optional
            Ignored.
        """

    def log_artifacts(self, folder: str | os.PathLike, artifact_path: str) -> None:
        """Drop the files.

        Parameters
        ----------
        folder : str or os.PathLike
            Ignored.
        artifact_path : str
            Ignored.
        """
