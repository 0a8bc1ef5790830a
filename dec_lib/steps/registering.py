"""The ``register`` step: the model in the registry, past the champion gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dec_lib.config.sections import RunConfig
from dec_lib.data.datasets import read_dataset
from dec_lib.mlops import tracking
from dec_lib.steps.common import (
    DATA_FINGERPRINT_TAG,
    TrackingContext,
    begin,
    config_from_sections,
    log,
    user_errors_exit,
)


@user_errors_exit
def register(model_path: str, report_path: str, model_name: str, work_dir: str,
             ctx: TrackingContext, dataset_path: str = "", registry: dict | None = None,
             data_unchanged: bool = False) -> dict[str, Any]:
    """Register the model and let the champion gate alias it (see ``dec_lib.mlops.promotion``).

    With ``dataset_path`` the candidate and the current champion are scored on that data; without
    it the first version becomes champion and later ones challengers. The new version records
    its confidence on that data (its training data) as ``drift.reference.*`` tags, and, when a
    champion recorded one, the data's drift from the champion's training data is logged
    (``dec_lib.mlops.drift``): figures for a reader, not inputs to the gate.
    """
    begin("register")
    import mlflow

    from dec_lib.mlops.serving import CHAMPION, champion_version, log_and_register

    config = config_from_sections(0, registry=registry or {})
    report = json.loads(Path(report_path).read_text())
    result = {"tracking_uri": tracking.resolve_tracking_uri(ctx.tracking_uri or None),
              "model_name": model_name}
    with ctx.step("register") as run:
        result["mlflow_run_id"] = run.info.run_id
        tracking.log_params({"register.model_name": model_name})
        if data_unchanged:
            champion = champion_version(model_name)
            reason = f"data unchanged since champion version {champion.version}; nothing trained"
            mlflow.set_tags({"gate.decision": "skipped", "gate.reason": reason})
            log.info("register: %s", reason)
            return {**result, "model_version": str(champion.version), "alias": CHAMPION,
                    "model_uri": f"models:/{model_name}@{CHAMPION}", "decision": "skipped",
                    "reason": reason}
        gate, decisions, drifts, reference = _promotion_gate(model_path, dataset_path,
                                                             model_name, config)
        registration = log_and_register(
            model_path,
            mapping={int(k): int(v) for k, v in report["mapping"].items()},
            image_shape=tuple(report["image_shape"]),
            model_name=model_name,
            metrics={k: v for k, v in report["metrics"].items()
                     if k in ("acc", "nmi", "ari", "silhouette")},
            run_id=run.info.run_id,
            work_dir=work_dir,
            tags={DATA_FINGERPRINT_TAG: report.get("fingerprint", ""),
                  **(reference.tags() if reference else {})},
            **({"gate": gate} if gate else {}),
        )
        if drifts:
            _record_drift(drifts[-1], model_name, registration.version)
            result["drift"] = drifts[-1].metrics()
        mlflow.set_tags({"registered.version": registration.version,
                         "registered.alias": registration.alias})
        result.update(model_version=registration.version, alias=registration.alias,
                      model_uri=registration.model_uri,
                      decision="promoted" if registration.alias == CHAMPION else "challenger")
        if decisions:
            decision = decisions[-1]
            tracking.log_metrics(decision.metrics())
            mlflow.set_tags({"gate.decision": result["decision"], "gate.reason": decision.reason,
                             "gate.criterion": decision.criterion,
                             "gate.champion_version": decision.champion_version or "none"})
            result.update(reason=decision.reason, criterion=decision.criterion,
                          candidate_score=decision.candidate,
                          champion_score=decision.champion,
                          champion_version=decision.champion_version)
            log.info("register: version %s is %s: %s", registration.version,
                     registration.alias, decision.reason)
    return result


def _promotion_gate(model_path: str, dataset_path: str, model_name: str, config: RunConfig):
    """A gate for ``log_and_register`` that scores both models on the data, its decisions,
    the drift of the data from the champion's training data, and the candidate's reference."""
    if not dataset_path:
        return None, [], [], None
    import tempfile

    from dec_lib.mlops.drift import measure_drift, reference_from_tags, reference_of
    from dec_lib.mlops.promotion import criterion_for, decide, score_model
    from dec_lib.mlops.serving import download_keras_model
    from dec_lib.model.dec_model import soft_assignments
    from dec_lib.model.saving import load_model

    dataset = read_dataset(dataset_path)
    criterion = criterion_for(config.registry.promotion_criterion, dataset.y is not None)
    candidate_model = load_model(model_path)
    candidate = score_model(candidate_model, dataset.x, dataset.y, criterion)
    # This data is the candidate's training data: what later runs measure drift against.
    reference = reference_of(soft_assignments(candidate_model, dataset.x))
    decisions, drifts = [], []

    def gate(champion) -> bool:
        score = None
        if champion is not None:
            with tempfile.TemporaryDirectory() as tmp:
                model = load_model(download_keras_model(model_name, champion.version, tmp))
            score = score_model(model, dataset.x, dataset.y, criterion)
            champion_reference = reference_from_tags(champion.tags)
            if champion_reference is None:
                log.info("register: champion version %s has no recorded training confidence "
                         "(registered before drift was measured); no drift figures",
                         champion.version)
            else:
                drifts.append(measure_drift(soft_assignments(model, dataset.x), champion_reference))
        decisions.append(decide(candidate, score, criterion=criterion,
                                tolerance=config.registry.promotion_tolerance,
                                champion_version=None if champion is None
                                else str(champion.version),
                                champion_registered=_registered_score(champion, criterion),
                                max_champion_drop=config.registry.max_champion_drop))
        return decisions[-1].promote

    return gate, decisions, drifts, reference


def _registered_score(champion, criterion: str) -> float | None:
    """The champion's ``criterion`` on its own data, from its version tags (None: absent)."""
    try:
        return float((champion.tags or {})[criterion]) if champion is not None else None
    except (KeyError, TypeError, ValueError):
        return None


def _record_drift(drift, model_name: str, version: str) -> None:
    """The drift figures on the run (metrics, and ``gate.drift.*`` tags beside the gate's
    decision) and on the new version, where a person reading the registry looks."""
    import mlflow

    tracking.log_metrics(drift.metrics())
    tags = {f"gate.{k}": f"{v:.4f}" for k, v in drift.metrics().items()}
    mlflow.set_tags(tags)
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        tracking.with_retries(lambda k=key, v=value: client.set_model_version_tag(
            model_name, version, k, v), f"tag {model_name} version {version}")
    log.info("register: drift from the champion's training data: %s", drift.describe())
