"""The champion gate wired to the registry: scores on the data, the decision, drift, records.

``dec_lib.mlops.promotion`` decides from two scores; this module gets the scores (the candidate
and the registered champion, both on the same current data), hands ``log_and_register`` the
gate, and records what was decided, with the data's drift from the champion's training data,
on the MLflow run and on the new version, where a person reading either looks.
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any

import mlflow

from dec_lib.config import RegistryConfig
from dec_lib.data.datasets import read_dataset
from dec_lib.mlops import tracking
from dec_lib.mlops.drift import Drift, Reference, measure_drift, reference_from_tags, reference_of
from dec_lib.mlops.promotion import Decision, criterion_for, decide, score_model
from dec_lib.mlops.registry import CHAMPION, Registration, champion_version, download_keras_model

__all__ = ["PROMOTED", "SKIPPED", "TO_CHALLENGER", "ChampionGate", "record_drift",
           "record_outcome", "record_skip", "registered_score"]

log = logging.getLogger(__name__)

PROMOTED, TO_CHALLENGER, SKIPPED = "promoted", "challenger", "skipped"
"""The gate's decision as the run's ``gate.decision`` tag and the register step's output."""


class ChampionGate:
    """A gate for ``log_and_register`` that scores the candidate and the champion on one data set.

    The candidate is scored, and its reference for later drift figures taken, when the gate is
    built; the champion only when the registry hands it over, so that the version compared is
    the one that holds the alias at that moment.

    Parameters
    ----------
    model_path : str
        The candidate DEC model's ``.keras`` file.
    dataset_path : str
        The current data (the candidate's training data) as the ingest step wrote it.
    model_name : str
        The registered model whose champion is compared.
    settings : RegistryConfig
        The criterion, the tolerance and the largest drop of the champion's score accepted.

    Attributes
    ----------
    criterion : str
        ``acc`` or ``silhouette``, as resolved for this data.
    reference : Reference
        The candidate on its training data, recorded on its version as ``drift.reference.*``.
    decision : Decision or None
        Set when the gate has been called.
    drift : Drift or None
        The data's drift from the champion's training data; None without a champion, or for a
        champion registered before drift was measured.
    """

    def __init__(self, model_path: str, dataset_path: str, model_name: str,
                 settings: RegistryConfig):
        from dec_lib.model.dec_model import soft_assignments
        from dec_lib.model.saving import load_model

        self._dataset = read_dataset(dataset_path)
        self._model_name = model_name
        self._settings = settings
        self.criterion = criterion_for(settings.promotion_criterion, self._dataset.y is not None)
        candidate_model = load_model(model_path)
        self._candidate = score_model(candidate_model, self._dataset.x, self._dataset.y,
                                      self.criterion)
        # This data is the candidate's training data: what later runs measure drift against.
        self.reference: Reference = reference_of(soft_assignments(candidate_model, self._dataset.x))
        self.decision: Decision | None = None
        self.drift: Drift | None = None

    def __call__(self, champion: Any | None) -> bool:
        """Whether the candidate replaces ``champion`` (a registered version, or None).

        Parameters
        ----------
        champion : mlflow.entities.model_registry.ModelVersion or None
            The version holding the ``champion`` alias now.

        Returns
        -------
        bool
            True: the candidate becomes champion.
        """
        from dec_lib.model.dec_model import soft_assignments
        from dec_lib.model.saving import load_model

        dataset, score = self._dataset, None
        if champion is not None:
            with tempfile.TemporaryDirectory() as tmp:
                model = load_model(download_keras_model(self._model_name, champion.version, tmp))
            score = score_model(model, dataset.x, dataset.y, self.criterion)
            champion_reference = reference_from_tags(champion.tags)
            if champion_reference is None:
                log.info("register: champion version %s has no recorded training confidence "
                         "(registered before drift was measured); no drift figures",
                         champion.version)
            else:
                self.drift = measure_drift(soft_assignments(model, dataset.x), champion_reference)
        self.decision = decide(
            self._candidate, score, criterion=self.criterion,
            tolerance=self._settings.promotion_tolerance,
            champion_version=None if champion is None else str(champion.version),
            champion_registered=registered_score(champion, self.criterion),
            max_champion_drop=self._settings.max_champion_drop)
        return self.decision.promote


def registered_score(champion: Any | None, criterion: str) -> float | None:
    """The champion's score on its own data when it was registered, from its version tags.

    Parameters
    ----------
    champion : mlflow.entities.model_registry.ModelVersion or None
    criterion : str
        The metric tag to read (``acc`` or ``silhouette``).

    Returns
    -------
    float or None
        None without a champion, or when the tag is absent or not a number.
    """
    try:
        return float((champion.tags or {})[criterion]) if champion is not None else None
    except (KeyError, TypeError, ValueError):
        return None


def record_drift(drift: Drift, model_name: str, version: str) -> None:
    """Record the drift figures on the active run and on the new version.

    On the run as metrics and as ``gate.drift.*`` tags beside the gate's decision; on the
    version as the same tags, where a person reading the registry looks.

    Parameters
    ----------
    drift : Drift
    model_name, version : str
        The version just registered.
    """
    tracking.log_metrics(drift.metrics())
    tags = {f"gate.{k}": f"{v:.4f}" for k, v in drift.metrics().items()}
    mlflow.set_tags(tags)
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        tracking.with_retries(lambda k=key, v=value: client.set_model_version_tag(
            model_name, version, k, v), f"tag {model_name} version {version}", upsert=True)
    log.info("register: drift from the champion's training data: %s", drift.describe())


def record_outcome(registration: Registration, gate: ChampionGate | None) -> str:
    """Record on the active run what became of the new version, and why.

    Tags ``registered.version`` and ``registered.alias``; with a gate that was called, its
    metrics (``gate.*``), its decision and reason as tags, and the drift figures.

    Parameters
    ----------
    registration : Registration
    gate : ChampionGate or None
        The gate ``log_and_register`` was given; None when there was no data to score on.

    Returns
    -------
    str
        ``PROMOTED`` or ``TO_CHALLENGER``.
    """
    outcome = PROMOTED if registration.alias == CHAMPION else TO_CHALLENGER
    if gate is not None and gate.drift is not None:
        record_drift(gate.drift, registration.model_name, registration.version)
    mlflow.set_tags({"registered.version": registration.version,
                     "registered.alias": registration.alias})
    decision = gate.decision if gate is not None else None
    if decision is not None:
        tracking.log_metrics(decision.metrics())
        mlflow.set_tags({"gate.decision": outcome, "gate.reason": decision.reason,
                         "gate.criterion": decision.criterion,
                         "gate.champion_version": decision.champion_version or "none"})
        log.info("register: version %s is %s: %s", registration.version, registration.alias,
                 decision.reason)
    return outcome


def record_skip(model_name: str) -> tuple[str, str]:
    """Record on the active run that nothing was registered: the data is the champion's.

    Parameters
    ----------
    model_name : str
        The registered model; its champion is the version that stays.

    Returns
    -------
    tuple of str
        The champion's version and the reason recorded.
    """
    champion = champion_version(model_name)
    reason = f"data unchanged since champion version {champion.version}; nothing trained"
    mlflow.set_tags({"gate.decision": SKIPPED, "gate.reason": reason})
    log.info("register: %s", reason)
    return str(champion.version), reason
