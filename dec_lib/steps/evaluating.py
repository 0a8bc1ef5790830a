"""The ``evaluate`` step: scores, figures and the run report."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from dec_lib import names
from dec_lib.data.datasets import read_dataset
from dec_lib.mlops import tracking
from dec_lib.steps.common import (
    TrackingContext,
    begin,
    fingerprint,
    log,
    user_errors_exit,
)


@dataclass
class Evaluation:
    """What the ``evaluate`` step scored and wrote, for its component's KFP outputs."""

    metrics: dict[str, float]
    confusion: list[list[int]] | None
    labels: list[int] | None
    mapping: dict[int, int]
    cluster_sizes: list[int]
    report_files: dict[str, Path] = dataclasses.field(default_factory=dict)
    """The figures, ``report.md`` and ``report.html`` by file name (gone if written to a
    temporary folder)."""


@user_errors_exit
def evaluate(dataset_path: str, model_path: str, report_path: str, ctx: TrackingContext,
             autoencoder_path: str = "", figures_dir: str = "",
             data_unchanged: bool = False, data_fingerprint: str = "") -> Evaluation:
    """Score the clustering, draw the figures and write the report, logged to MLflow.

    The training curves come from the files the training steps left next to their models
    (``autoencoder_path`` for pretraining); ``figures_dir`` keeps the figures and the report,
    else they live in a temporary folder only long enough to reach MLflow. With
    ``data_unchanged`` (a warm start on the champion's own data) nothing was trained, so
    nothing is scored: the report says so, and the champion's run holds its figures.

    Parameters
    ----------
    data_fingerprint : str, optional
        The data's fingerprint as ingest recorded it, written into the report (which register
        tags the model version with); computed here when not given.
    """
    begin(names.EVALUATE)
    import tempfile

    if data_unchanged:
        return _evaluate_unchanged(dataset_path, report_path, ctx, figures_dir,
                                   data_fingerprint)

    from dec_lib.core.phases import evaluate as evaluate_phase
    from dec_lib.model.saving import load_model
    from dec_lib.reports.run_report import read_dec_history, read_pretrain_losses, write_run_report

    tracker = tracking.MlflowTracker()
    with ctx.step(names.EVALUATE):
        dataset = read_dataset(dataset_path)
        scores = evaluate_phase(load_model(model_path), dataset.x, dataset.y, tracker=tracker)
        evaluation = Evaluation(metrics=scores.metrics, confusion=scores.confusion,
                                labels=scores.labels, mapping=scores.mapping,
                                cluster_sizes=scores.cluster_sizes)
        Path(report_path).write_text(json.dumps({
            "metrics": scores.metrics, "confusion": scores.confusion, "labels": scores.labels,
            "mapping": {str(k): v for k, v in scores.mapping.items()},
            "cluster_sizes": scores.cluster_sizes,
            "image_shape": list(dataset.image_shape),
            "fingerprint": data_fingerprint or fingerprint(dataset.x, dataset.y),
        }, indent=2))

        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(figures_dir or scratch)
            evaluation.report_files = write_run_report(
                folder, title=f"DEC clustering report: {dataset.source}",
                metrics=scores.metrics, cluster_sizes=scores.cluster_sizes,
                confusion=scores.confusion, labels=scores.labels, mapping=scores.mapping,
                x=dataset.x, image_shape=dataset.image_shape, embedding=scores.embedding,
                q=scores.q, y=dataset.y,
                pretrain_losses=read_pretrain_losses(autoencoder_path) if autoencoder_path
                else [],
                dec_history=read_dec_history(model_path))
            tracker.log_artifacts(folder, "report")
        log.info("evaluate: report and %d figures in MLflow under report/",
                 len(evaluation.report_files) - 2)
    return evaluation


def _evaluate_unchanged(dataset_path: str, report_path: str, ctx: TrackingContext,
                        figures_dir: str, data_fingerprint: str) -> Evaluation:
    import html
    import tempfile

    with ctx.step(names.EVALUATE):
        dataset = read_dataset(dataset_path)
        data_fingerprint = data_fingerprint or fingerprint(dataset.x, dataset.y)
        Path(report_path).write_text(json.dumps({
            "metrics": {}, "confusion": None, "labels": None, "mapping": {},
            "cluster_sizes": [], "image_shape": list(dataset.image_shape),
            "fingerprint": data_fingerprint, "data_unchanged": True}, indent=2))
        evaluation = Evaluation(metrics={}, confusion=None, labels=None, mapping={},
                                cluster_sizes=[])
        title = f"DEC clustering report: {dataset.source}"
        note = (f"The data ({dataset.n_samples} images, fingerprint {data_fingerprint}) is the "
                "data the champion was trained on: nothing was trained, so nothing was scored. "
                "The champion's own run holds its scores and figures.")
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(figures_dir or scratch)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "report.md").write_text(f"# {title}\n\n{note}\n")
            (folder / "report.html").write_text(
                f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
                f"</title></head><body><h1>{html.escape(title)}</h1><p>{html.escape(note)}</p>"
                "</body></html>\n")
            evaluation.report_files = {name: folder / name for name in ("report.md",
                                                                        "report.html")}
            tracking.MlflowTracker().log_artifacts(folder, "report")
        log.info("evaluate: the data is unchanged; nothing to score")
    return evaluation
