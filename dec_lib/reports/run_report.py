"""What ``evaluate`` shows a user: the five figures of a run and its report, from plain arrays.

The training steps leave their curves beside their models (``pretrain_losses.json`` next to
``autoencoder.keras``, ``history.json`` next to ``dec.keras``), because evaluate runs in another
process (another pod) and the files travel with the model artifacts it already receives. Missing
files (a model from before they existed) draw an empty panel rather than failing the run.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# figures (Matplotlib) and metrics (scikit-learn) are imported where they are drawn: the
# training steps only write and read their curve files here, and a step that trains nothing
# should not spend seconds importing plotting libraries.

log = logging.getLogger(__name__)

__all__ = ["FIGURES", "draw_figures", "label_confusion", "read_dec_history",
           "read_pretrain_losses", "save_dec_history", "save_pretrain_losses",
           "write_run_report"]

PRETRAIN_LOSSES = "pretrain_losses.json"
DEC_HISTORY = "history.json"

FIGURES = {  # file name -> caption, in the report's order
    "confusion_matrix.png": "Confusion matrix: true labels by cluster (Hungarian mapping)",
    "cluster_samples.png": "Most and least confident images of each cluster",
    "embedding_map.png": "Embedding (PCA) coloured by cluster",
    "training_curves.png": "Training: pretraining loss; DEC loss, changed labels and ACC",
    "cluster_sizes.png": "Cluster sizes",
}


# ------------------------------------------------------------------------------ training logs

def _finite_or_none(value: Any) -> float | None:
    """JSON has no NaN: the loss of update 0 (none measured yet) is written as null."""
    return None if value is None or not math.isfinite(float(value)) else float(value)


def save_pretrain_losses(model_dir: str | Path, losses: Sequence[float]) -> Path:
    """The reconstruction loss of each epoch, next to the autoencoder."""
    path = Path(model_dir) / PRETRAIN_LOSSES
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([_finite_or_none(v) for v in losses]))
    return path


def save_dec_history(model_dir: str | Path, updates: Sequence[Mapping[str, Any]], tol: float,
                     warmup_iterations: int) -> Path:
    """One record per target update (iteration, loss, delta_label, acc when monitored)."""
    path = Path(model_dir) / DEC_HISTORY
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [{k: _finite_or_none(v) if k != "iteration" else int(v) for k, v in u.items()}
               for u in updates]
    path.write_text(json.dumps({"tol": tol, "warmup_iterations": warmup_iterations,
                                "updates": records}, indent=1))
    return path


def _beside(model_path: str | Path, name: str) -> Path:
    """``name`` in a model's folder (a step's model artifact), or next to a bare model file."""
    path = Path(model_path)
    return (path if path.is_dir() else path.parent) / name


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        log.info("evaluate: no %s at %s; its curve stays empty", what, path)
        return None
    return json.loads(path.read_text())


def read_pretrain_losses(model_path: str | Path) -> list[float]:
    """The pretraining loss per epoch, saved beside the autoencoder by `save_pretrain_losses`.

    Parameters
    ----------
    model_path : str or pathlib.Path
        The autoencoder's model file or folder.

    Returns
    -------
    list of float
        One loss per epoch, NaN where none was recorded; empty when there is no file.
    """
    losses = _read_json(_beside(model_path, PRETRAIN_LOSSES), "pretraining losses")
    return [float("nan") if v is None else float(v) for v in losses or []]


def read_dec_history(model_path: str | Path) -> dict[str, Any]:
    """``{"tol", "warmup_iterations", "updates"}``; empty updates when there is no file."""
    history = _read_json(_beside(model_path, DEC_HISTORY), "DEC history") or {}
    return {"tol": history.get("tol"), "warmup_iterations": history.get("warmup_iterations", 0),
            "updates": history.get("updates", [])}


# ------------------------------------------------------------------------------------ figures

def label_confusion(y: np.ndarray, clusters: np.ndarray, n_clusters: int,
                    labels: Sequence[int]) -> np.ndarray:
    """Counts of ``labels`` (rows) in each of the ``n_clusters`` clusters (columns).

    ``contingency`` stops at the largest cluster and label present, so trailing empty clusters
    are padded with zero columns (the figure must show them) and the rows are picked in
    ``labels`` order (a mapped label absent from ``y`` is a zero row).
    """
    from dec_lib.model.metrics import contingency

    counts = contingency(y, clusters)
    padded = np.zeros((max(n_clusters, counts.shape[0]),
                       max(max(labels, default=-1) + 1, counts.shape[1])), dtype=np.int64)
    padded[:counts.shape[0], :counts.shape[1]] = counts
    return padded.T[list(labels)]


def _tiles(x: np.ndarray, image_shape: Sequence[int]) -> np.ndarray | None:
    """The images as N×H×W(×C) for the sample grid, or None (logged) when they are not 2-D."""
    shape = tuple(image_shape)
    if len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3, 4)):
        return x.reshape((len(x), *shape))
    log.info("evaluate: no sample grid: images of shape %s are not 2-D pictures",
             "x".join(map(str, shape)))
    return None


def draw_figures(out_dir: str | Path, *, x: np.ndarray, image_shape: Sequence[int],
                 embedding: np.ndarray, q: np.ndarray, y: np.ndarray | None,
                 mapping: Mapping[int, int], labels: Sequence[int] | None,
                 pretrain_losses: Sequence[float], dec_history: Mapping[str, Any],
                 ) -> dict[str, Path]:
    """Draw the figures that apply into ``out_dir``; return caption -> PNG in report order.

    Without labels there is no confusion matrix (and the ACC panel says so); flat vectors get
    no sample grid.
    """
    from dec_lib.reports import figures

    out_dir = Path(out_dir)
    clusters, n_clusters = q.argmax(axis=1), q.shape[1]
    drawn: dict[str, Path] = {}

    def path(name: str) -> Path:
        drawn[FIGURES[name]] = out_dir / name
        return out_dir / name

    if y is not None and labels is not None:
        figures.confusion_matrix_png(label_confusion(y, clusters, n_clusters, labels), labels,
                                     mapping, path("confusion_matrix.png"))
    tiles = _tiles(x, image_shape)
    if tiles is not None:
        figures.cluster_samples_png(tiles, clusters, q.max(axis=1),
                                    path("cluster_samples.png"), n_clusters=n_clusters)
    figures.embedding_map_png(embedding, clusters, path("embedding_map.png"))
    figures.training_curves_png(pretrain_losses, dec_history.get("updates", []),
                                path("training_curves.png"), tol=dec_history.get("tol"),
                                warmup_iterations=dec_history.get("warmup_iterations") or 0)
    figures.cluster_sizes_png(np.bincount(clusters, minlength=n_clusters),
                              path("cluster_sizes.png"), mapping=mapping or None)
    return drawn


def write_run_report(out_dir: str | Path, *, title: str, metrics: Mapping[str, Any],
                     cluster_sizes: Sequence[int], confusion: Sequence[Sequence[int]] | None,
                     labels: Sequence[int] | None, mapping: Mapping[int, int],
                     **figure_inputs: Any) -> dict[str, Path]:
    """Figures, ``report.md`` and ``report.html`` in ``out_dir``; their paths by file name."""
    from dec_lib.reports import document as report

    drawn = draw_figures(out_dir, labels=labels, mapping=mapping, **figure_inputs)
    markdown, html = report.write_report(out_dir, metrics, drawn, cluster_sizes, confusion,
                                         title, labels=labels, mapping=mapping or None)
    return {p.name: p for p in [*drawn.values(), markdown, html]}
