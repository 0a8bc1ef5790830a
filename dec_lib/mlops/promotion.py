"""The champion gate: does a newly trained version replace the registered champion?

Both models are scored on the same, current data at registration time, never a stored figure
against a fresh one: the data may have drifted since the champion was trained, and what matters
is which model clusters today's data better.

With labels the score is ACC. Without labels it is the silhouette of each model's clusters in
its own embedding, on the same sample of points: DEC trains for compact, well-separated clusters
in its embedding, the silhouette measures exactly that, and it is scale-free, so two embeddings
can be compared. It cannot tell a semantically wrong partition from a right one; a model that
leaves clusters empty is therefore never promoted without labels.

Scoring both models on today's data cannot see data that went bad: shuffled labels or images
replaced with noise pull both scores down together, and a model fitted to them then looks as
good as the champion. The champion's own score at registration is the yardstick for that: when
it scores far below it today (more than ``registry.max_champion_drop``), the data, not the
model, changed for the worse, and the new version stays challenger for a person to review.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from dec_lib.model.autoencoder import embed
from dec_lib.model.dec_model import cluster_labels, dec_encoder, soft_assignments
from dec_lib.model.metrics import cluster_accuracy, sampled_silhouette


def criterion_for(setting: str, has_labels: bool) -> str:
    """The criterion the gate scores by: ``registry.promotion_criterion`` resolved for the data.

    Parameters
    ----------
    setting : str
        ``auto``, ``acc`` or ``silhouette``.
    has_labels : bool
        Whether the data set has labels.

    Returns
    -------
    str
        ``acc`` or ``silhouette``; ``auto`` is ``acc`` with labels, ``silhouette`` without.

    Raises
    ------
    ConfigError
        On ``acc`` for data without labels, which it cannot score.
    """
    from dec_lib.errors import ConfigError

    if setting == "auto":
        return "acc" if has_labels else "silhouette"
    if setting == "acc" and not has_labels:
        raise ConfigError("registry.promotion_criterion",
                          "'acc' needs labels, and this data set has none; use 'silhouette'")
    return setting


@dataclass
class Score:
    """A model's score on the data, and how many of its clusters received no image.

    Attributes
    ----------
    value : float
        ACC or silhouette, by the criterion.
    empty_clusters : int
        Clusters no image lands in: a label-free gate refuses a model with more of them.
    """

    value: float
    empty_clusters: int


def score_model(model: keras.Model, x: np.ndarray, y: np.ndarray | None,
                criterion: str) -> Score:
    """Score a DEC model on ``x`` by ``criterion``.

    Parameters
    ----------
    model : keras.Model
        A DEC model (encoder + clustering layer) as saved by the pipeline.
    x : numpy.ndarray
        The images, one row each.
    y : numpy.ndarray or None
        Their labels; needed for ``acc``.
    criterion : str
        ``acc`` (accuracy of the best cluster-to-label mapping) or ``silhouette`` (of the
        clusters in the model's own embedding).

    Returns
    -------
    Score
    """
    q = soft_assignments(model, x)
    clusters = cluster_labels(q)
    empty = int(q.shape[1] - len(np.unique(clusters)))
    return Score(SCORERS[criterion](model, x, y, clusters), empty)


SCORERS: dict[str, Callable[[keras.Model, np.ndarray, np.ndarray | None, np.ndarray], float]] = {
    "acc": lambda model, x, y, clusters: cluster_accuracy(y, clusters),
    "silhouette": lambda model, x, y, clusters: sampled_silhouette(
        embed(dec_encoder(model), x), clusters),
}
"""The gate's criteria; with ``auto`` (``criterion_for``) they are exactly the values
``registry.promotion_criterion`` allows, which ``tests/test_promotion.py`` checks."""


@dataclass
class Decision:
    """What the gate decided about a candidate, with the figures and the reason behind it.

    Attributes
    ----------
    promote : bool
        The candidate becomes champion.
    criterion : str
        ``acc`` or ``silhouette``.
    candidate : float
        The candidate's score on the current data.
    tolerance : float
        As given to ``decide``.
    reason : str
        One sentence, recorded as the run's ``gate.reason``.
    """

    promote: bool
    criterion: str
    candidate: float
    champion: float | None
    """None: there was no champion."""
    champion_version: str | None
    tolerance: float
    reason: str
    champion_registered: float | None = None
    """The champion's score when it was registered, on its own data (None: not recorded)."""

    def metrics(self) -> dict[str, float]:
        """The decision's figures as MLflow metrics (``gate.*``); absent ones are left out."""
        out = {"gate.candidate": self.candidate, "gate.promoted": float(self.promote)}
        if self.champion is not None:
            out["gate.champion"] = self.champion
        if self.champion_registered is not None:
            out["gate.champion_registered"] = self.champion_registered
        return out


def decide(candidate: Score, champion: Score | None, *, criterion: str, tolerance: float,
           champion_version: str | None = None, champion_registered: float | None = None,
           max_champion_drop: float = 1.0) -> Decision:
    """Whether the candidate replaces the champion, and why.

    Parameters
    ----------
    candidate : Score
        The new version on the current data.
    champion : Score or None
        The champion on the same data; None when there is no champion (the candidate wins).
    criterion : str
        What the scores are (``acc`` or ``silhouette``), for the reason.
    tolerance : float
        How far below the champion the candidate may score and still be promoted.
    champion_version : str, optional
        Recorded in the decision.
    champion_registered : float, optional
        The champion's score when it was registered; with it, data on which the champion falls
        more than ``max_champion_drop`` below it holds the candidate for review.
    max_champion_drop : float, default 1.0
        See ``champion_registered`` (1: never hold).

    Returns
    -------
    Decision
    """
    def decision(promote: bool, reason: str) -> Decision:
        return Decision(promote=promote, criterion=criterion, candidate=candidate.value,
                        champion=None if champion is None else champion.value,
                        champion_version=champion_version, tolerance=tolerance, reason=reason,
                        champion_registered=champion_registered)

    if champion is None:
        return decision(True, "no champion yet")
    if champion_registered is not None and \
            champion.value < champion_registered - max_champion_drop:
        return decision(False, f"the data changed for the worse: the champion scores "
                               f"{criterion} {champion.value:.4f} on it against "
                               f"{champion_registered:.4f} when registered (more than "
                               f"{max_champion_drop} below); held for review")
    if criterion == "silhouette" and candidate.empty_clusters > champion.empty_clusters:
        return decision(False, f"{candidate.empty_clusters} empty clusters against the "
                               f"champion's {champion.empty_clusters}")
    if candidate.value >= champion.value - tolerance:
        return decision(True, f"{criterion} {candidate.value:.4f} against the champion's "
                              f"{champion.value:.4f} (tolerance {tolerance})")
    return decision(False, f"{criterion} {candidate.value:.4f} is more than {tolerance} below "
                           f"the champion's {champion.value:.4f}")
