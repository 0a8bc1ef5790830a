"""The ``register`` step: the model in the registry, past the champion gate.

The step reads its artifacts, hands them to ``dec_lib.mlops.registry`` and
``dec_lib.mlops.champion_gate``, and describes what they did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dec_lib import names
from dec_lib.mlops import tracking
from dec_lib.steps.common import TrackingContext, begin, config_from_sections, user_errors_exit


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
    begin(names.REGISTER)
    # Imported after ``begin``: the gate loads TensorFlow, whose thread pools begin sizes.
    from dec_lib.mlops import champion_gate
    from dec_lib.mlops.registry import CHAMPION, DATA_FINGERPRINT_TAG, log_and_register

    config = config_from_sections(0, registry=registry or {})
    report = json.loads(Path(report_path).read_text())
    result = {"tracking_uri": tracking.resolve_tracking_uri(ctx.tracking_uri or None),
              "model_name": model_name}
    with ctx.step(names.REGISTER) as run:
        result["mlflow_run_id"] = run.info.run_id
        tracking.log_params({"register.model_name": model_name})
        if data_unchanged:
            version, reason = champion_gate.record_skip(model_name)
            return {**result, "model_version": version, "alias": CHAMPION,
                    "model_uri": f"models:/{model_name}@{CHAMPION}",
                    "decision": champion_gate.SKIPPED, "reason": reason}
        gate = (champion_gate.ChampionGate(model_path, dataset_path, model_name,
                                           config.registry) if dataset_path else None)
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
                  **(gate.reference.tags() if gate is not None else {})},
            **({"gate": gate} if gate is not None else {}),
        )
        decision = champion_gate.record_outcome(registration, gate)
    result.update(model_version=registration.version, alias=registration.alias,
                  model_uri=registration.model_uri, decision=decision)
    if gate is not None and gate.drift is not None:
        result["drift"] = gate.drift.metrics()
    if gate is not None and gate.decision is not None:
        result.update(reason=gate.decision.reason, criterion=gate.decision.criterion,
                      candidate_score=gate.decision.candidate,
                      champion_score=gate.decision.champion,
                      champion_version=gate.decision.champion_version)
    return result
