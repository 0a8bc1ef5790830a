"""The figures a user looks at after a run, each written as one PNG file.

Each function builds its own ``matplotlib.figure.Figure`` on an Agg canvas instead of using
pyplot: pyplot keeps every figure in a global registry (a leak in a long-lived process) and picks
a backend from the environment, which on a headless pod or in a notebook is not ours to choose.
Every function takes plain arrays, draws something sensible for empty or single clusters, and
returns the path it wrote, so a step can hand the files to MLflow or to
``dec_lib.reports.document``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from dec_lib.errors import DataError

__all__ = [
    "cluster_colours",
    "cluster_samples_png",
    "cluster_sizes_png",
    "confusion_matrix_png",
    "embedding_map_png",
    "mapped_cluster_order",
    "training_curves_png",
]

DPI = 100


@contextlib.contextmanager
def _figure(path: str | Path, width: float, height: float) -> Iterator[Figure]:
    """A Figure on its own Agg canvas, saved to ``path`` as PNG and cleared on exit."""
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    try:
        yield figure
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png", dpi=DPI)
    finally:
        figure.clear()


def _no_data(ax: Any, message: str = "no data") -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center",
            color="0.4", fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])


def cluster_colours(n: int) -> list[tuple[float, ...]]:
    """Distinct colours for ``n`` clusters: tab10/tab20 where they suffice, else turbo."""
    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](i / max(n - 1, 1)) for i in range(n)]


def _int_vector(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values).ravel()
    if array.size and (array.dtype.kind not in "biu" or array.min() < 0):
        raise DataError(name, "must be non-negative integers")
    return array.astype(np.int64)


def mapped_cluster_order(mapping: Mapping[Any, Any], labels: Sequence[Any],
                         n_clusters: int) -> list[int]:
    """Cluster ids sorted by the position of their mapped label in ``labels``, then by id.

    Clusters with no mapping (empty ones) come last, so a good clustering shows a diagonal.
    """
    position = {int(label): i for i, label in enumerate(labels)}
    mapped = {int(c): int(label) for c, label in mapping.items()}

    def key(cluster: int) -> tuple[int, int]:
        label = mapped.get(cluster)
        return (position.get(label, len(position)) if label is not None
                else len(position) + 1, cluster)

    return sorted(range(n_clusters), key=key)


# ------------------------------------------------------------------------------ confusion matrix

def confusion_matrix_png(confusion: Any, labels: Sequence[Any] | None,
                         mapping: Mapping[Any, Any], path: str | Path) -> Path:
    """Counts of true labels (rows) in clusters (columns), clusters ordered by mapped label.

    ``confusion[i][c]`` counts the images of ``labels[i]`` in cluster ``c`` (e.g.
    ``metrics.contingency(y, clusters).T``); ``mapping`` is the Hungarian cluster -> label map
    (string keys, as read back from JSON, are fine). Colour is each row's share, so a small class
    reads as well as a large one; non-zero counts are written in the cells and the mapped cell of
    each cluster is outlined.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    if counts.ndim != 2:
        raise DataError("confusion", f"expected a labels × clusters matrix, got {counts.shape}")
    n_labels, n_clusters = counts.shape
    labels = list(range(n_labels)) if labels is None else list(labels)
    if len(labels) != n_labels:
        raise DataError("confusion", f"{len(labels)} labels for {n_labels} rows")
    order = mapped_cluster_order(mapping, labels, n_clusters)
    mapped = {int(c): int(label) for c, label in mapping.items()}
    width, height = max(5.0, 1.8 + 0.42 * n_clusters), max(4.0, 1.5 + 0.38 * n_labels)
    with _figure(path, width, height) as figure:
        ax = figure.add_subplot()
        if counts.size == 0 or counts.sum() == 0:
            _no_data(ax)
            return Path(path)
        ordered = counts[:, order]
        totals = ordered.sum(axis=1, keepdims=True)
        share = np.divide(ordered, totals, out=np.zeros(ordered.shape), where=totals > 0)
        image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        figure.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="share of the true label")
        fontsize = 9 if n_clusters <= 12 else 7 if n_clusters <= 20 else 5.5
        for i, j in zip(*np.nonzero(ordered), strict=True):
            ax.text(j, i, str(ordered[i, j]), ha="center", va="center", fontsize=fontsize,
                    color="white" if share[i, j] > 0.55 else "black")
        row_of = {int(label): i for i, label in enumerate(labels)}
        for j, cluster in enumerate(order):
            if mapped.get(cluster) in row_of:
                ax.add_patch(Rectangle((j - 0.5, row_of[mapped[cluster]] - 0.5), 1, 1,
                                       fill=False, edgecolor="darkorange", linewidth=1.2))
        ax.set_xticks(range(n_clusters),
                      [f"{c}\n→{mapped[c]}" if c in mapped else str(c) for c in order],
                      fontsize=min(fontsize + 1, 9))
        ax.set_yticks(range(n_labels), [str(label) for label in labels], fontsize=9)
        ax.set_xlabel("cluster (→ mapped label)")
        ax.set_ylabel("true label")
        ax.set_title(f"Confusion matrix: {int(counts.sum()):,} images, {n_clusters} clusters")
        figure.tight_layout()
    return Path(path)


# ------------------------------------------------------------------------------- cluster samples

def _as_tiles(images: Any) -> np.ndarray:
    """Images as N×H×W (grey) or N×H×W×3 floats in [0, 1] (min-max over the whole array)."""
    tiles = np.asarray(images, dtype=np.float32)
    if tiles.ndim == 4 and tiles.shape[-1] == 1:
        tiles = tiles[..., 0]
    if tiles.ndim == 4 and tiles.shape[-1] == 4:
        tiles = tiles[..., :3]
    if tiles.ndim not in (3, 4) or (tiles.ndim == 4 and tiles.shape[-1] != 3):
        raise DataError("images", f"expected N×H×W or N×H×W×C images, got {tiles.shape}; "
                        "reshape flat rows with the dataset's image_shape")
    if tiles.size:
        low, high = float(np.nanmin(tiles)), float(np.nanmax(tiles))
        tiles = (tiles - low) / (high - low) if high > low else np.zeros_like(tiles)
    return tiles


def cluster_samples_png(images: Any, clusters: Any, confidence: Any, path: str | Path,
                        per_cluster: int = 8, n_clusters: int | None = None) -> Path:
    """One row per cluster: its most confident images, a gap, then its least confident ones.

    The left half shows what a cluster is; the right half where it is unsure, which is where
    a wrong merge shows first. ``confidence`` is each image's largest soft assignment (max q);
    ``n_clusters`` shows trailing empty clusters that ``clusters`` cannot reveal. The numbers
    on the tiles are the confidences. All tiles go into one mosaic image, so 30 clusters cost
    one ``imshow``, not 240 axes.
    """
    if per_cluster < 1:
        raise ValueError(f"per_cluster must be >= 1, got {per_cluster}")
    tiles = _as_tiles(images)
    clusters = _int_vector(clusters, "clusters")
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    if not len(tiles) == len(clusters) == len(confidence):
        raise DataError("images", f"{len(tiles)} images, {len(clusters)} clusters and "
                        f"{len(confidence)} confidences; expected one of each per image")
    k = max(n_clusters or 0, int(clusters.max()) + 1 if clusters.size else 0, 1)
    n_best = math.ceil(per_cluster / 2)
    n_worst = per_cluster - n_best
    h, w = tiles.shape[1], tiles.shape[2]
    pad, gap = max(1, h // 14), max(2, w // 2)
    columns = [j * (w + pad) + pad for j in range(n_best)]
    columns += [n_best * (w + pad) + gap + j * (w + pad) + pad for j in range(n_worst)]
    canvas_w = columns[-1] + w + pad
    canvas = np.full((k * (h + pad) + pad, canvas_w, *tiles.shape[3:]), np.nan, np.float32)

    sizes = np.bincount(clusters, minlength=k)
    placed: list[tuple[int, int, float]] = []  # (row, column index, confidence)
    for row in range(k):
        members = np.flatnonzero(clusters == row)
        ranked = members[np.argsort(-confidence[members], kind="stable")]
        best, rest = ranked[:n_best], ranked[n_best:]
        worst = rest[len(rest) - min(n_worst, len(rest)):]
        top = row * (h + pad) + pad
        for slot, index in [*enumerate(best), *((n_best + j, i) for j, i in enumerate(worst))]:
            canvas[top:top + h, columns[slot]:columns[slot] + w] = tiles[index]
            placed.append((row, slot, float(confidence[index])))

    tile_inch = 0.55
    left, header = 1.25, 0.45
    width = left + tile_inch * canvas_w / w + 0.15
    height = header + tile_inch * canvas.shape[0] / h + 0.1
    with _figure(path, width, height) as figure:
        ax = figure.add_axes((left / width, 0.1 / height, 1 - (left + 0.15) / width,
                              1 - (header + 0.1) / height))
        if tiles.ndim == 4:
            ax.imshow(np.nan_to_num(canvas, nan=1.0), interpolation="nearest")
        else:
            cmap = colormaps["gray"].with_extremes(bad="white")
            ax.imshow(np.ma.masked_invalid(canvas), cmap=cmap, vmin=0, vmax=1,
                      interpolation="nearest")
        ax.set_axis_off()
        small = 6 if w >= 20 else 5
        for row, slot, value in placed:
            ax.text(columns[slot] + 1, row * (h + pad) + pad + h - 1, f"{value:.2f}",
                    fontsize=small, color="gold", va="bottom", ha="left")
        for row in range(k):
            middle = row * (h + pad) + pad + h / 2
            ax.text(-w * 0.3, middle, f"cluster {row}\n{sizes[row]:,} images", ha="right",
                    va="center", fontsize=8, color="firebrick" if sizes[row] == 0 else "black")
            if sizes[row] == 0:
                ax.text((n_best * (w + pad) + pad) / 2, middle, "empty", ha="center",
                        va="center", fontsize=9, color="0.5")
        if n_best:
            ax.text((n_best * (w + pad) + pad) / 2, -pad, "most confident", ha="center",
                    va="bottom", fontsize=9)
        if n_worst:
            start = n_best * (w + pad) + gap
            ax.text((start + canvas_w) / 2, -pad, "least confident", ha="center", va="bottom",
                    fontsize=9)
            ax.axvline(n_best * (w + pad) + gap / 2 + pad / 2, color="0.3", linewidth=1)
    return Path(path)


# --------------------------------------------------------------------------------- embedding map

def embedding_map_png(embedding: Any, clusters: Any, path: str | Path, sample: int = 3000,
                      seed: int = 0) -> Path:
    """A random sample of the embedding projected to 2-D by PCA, coloured by cluster.

    PCA, not t-SNE or UMAP: it takes milliseconds where they take tens of seconds (UMAP also
    JIT-compiles on every fresh pod), and it is deterministic, so two runs' maps compare. Being
    linear it can overlap clusters that are apart in the full embedding; the cluster ids are
    written at their medians to read it anyway. ``clusters`` None draws one colour.
    """
    points = np.asarray(embedding, dtype=np.float64)
    if points.ndim == 1:
        points = points[:, None]
    if points.ndim != 2:
        raise DataError("embedding", f"expected an N×d array, got shape {points.shape}")
    assignment = None if clusters is None else _int_vector(clusters, "clusters")
    if assignment is not None and len(assignment) != len(points):
        raise DataError("clusters", f"{len(assignment)} clusters for {len(points)} points")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(points), min(len(points), sample), replace=False))
    xy, axis_names = _project(points[chosen])
    with _figure(path, 8.0, 6.5) as figure:
        ax = figure.add_subplot()
        if len(chosen) == 0:
            _no_data(ax)
            return Path(path)
        if assignment is None:
            ax.scatter(xy[:, 0], xy[:, 1], s=5, color="tab:blue", alpha=0.6, linewidths=0)
        else:
            picked = assignment[chosen]
            k = int(assignment.max()) + 1
            colours = cluster_colours(k)
            for cluster in np.unique(picked):
                at = xy[picked == cluster]
                ax.scatter(at[:, 0], at[:, 1], s=5, color=colours[cluster], alpha=0.6,
                           linewidths=0, label=f"{cluster} ({len(at)})")
                centre = np.median(at, axis=0)
                ax.text(centre[0], centre[1], str(cluster), fontsize=9, weight="bold",
                        ha="center", va="center",
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.8})
            if len(np.unique(picked)) <= 30:
                ax.legend(title="cluster (points)", fontsize=7, title_fontsize=8,
                          markerscale=3, loc="center left", bbox_to_anchor=(1.01, 0.5),
                          ncol=1 if len(np.unique(picked)) <= 15 else 2, frameon=False)
        ax.set_xlabel(axis_names[0])
        ax.set_ylabel(axis_names[1])
        ax.set_title(f"Embedding ({points.shape[1]}-d) by PCA: {len(chosen):,} of "
                     f"{len(points):,} points")
        figure.tight_layout()
    return Path(path)


def _project(points: np.ndarray) -> tuple[np.ndarray, tuple[str, str]]:
    """Two PCA coordinates and axis names; zeros where there is no variance to show."""
    n, d = points.shape
    xy = np.zeros((n, 2))
    names = ("PC1", "PC2")
    if n < 2 or not np.any(points.std(axis=0) > 0):
        return xy, names
    if d == 1:
        xy[:, 0] = points[:, 0] - points[:, 0].mean()
        return xy, ("dimension 1", "(none)")
    from sklearn.decomposition import PCA

    pca = PCA(n_components=min(2, n, d), svd_solver="full")
    projected = pca.fit_transform(points)
    xy[:, : projected.shape[1]] = projected
    ratios = [*pca.explained_variance_ratio_, 0.0]
    return xy, (f"PC1 ({ratios[0]:.0%} of variance)", f"PC2 ({ratios[1]:.0%} of variance)")


# ------------------------------------------------------------------------------- training curves

def _records(history: Sequence[Any]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(r) if dataclasses.is_dataclass(r) else dict(r) for r in history]


def _series(records: list[dict[str, Any]], name: str, skip_first: bool = False
            ) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(r["iteration"], r[name]) for r in records
             if r.get(name) is not None and math.isfinite(float(r[name]))
             and not (skip_first and r["iteration"] == 0)]
    if not pairs:
        return np.array([]), np.array([])
    x, y = zip(*pairs, strict=True)
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float)


def training_curves_png(pretrain_losses: Sequence[float], dec_history: Sequence[Any],
                        path: str | Path, tol: float | None = None,
                        warmup_iterations: int = 0) -> Path:
    """Four panels: pretraining loss per epoch; DEC loss, changed labels and ACC per update.

    ``dec_history`` holds dicts (or ``training.UpdateRecord``s) with ``iteration``, ``loss``,
    ``delta_label`` and, when labels were monitored, ``acc``. Iteration 0's changed fraction is
    1 by definition and is left out; ``tol`` draws the stopping threshold and
    ``warmup_iterations`` where self-training took over from the warm-up. An empty input
    leaves its panel saying so instead of failing.
    """
    records = _records(dec_history)
    losses = np.asarray([v for v in pretrain_losses], dtype=float)
    with _figure(path, 11.0, 7.5) as figure:
        axes = figure.subplots(2, 2)
        panels = [
            (axes[0, 0], (np.arange(1, len(losses) + 1), losses), "Pretraining",
             "epoch", "reconstruction loss (MSE)"),
            (axes[0, 1], _series(records, "loss"), "DEC self-training", "iteration",
             "KL(P || Q) loss"),
            (axes[1, 0], _series(records, "delta_label", skip_first=True),
             "Labels changed since the previous update", "iteration", "fraction of images"),
            (axes[1, 1], _series(records, "acc"), "Accuracy (monitoring only)", "iteration",
             "ACC"),
        ]
        for ax, (x, y), title, xlabel, ylabel in panels:
            ax.set_title(title, fontsize=10)
            finite = np.isfinite(y)
            if not finite.any():
                _no_data(ax, "no labels: ACC not tracked" if ylabel == "ACC" and records
                         else "no data")
                continue
            ax.plot(x[finite], y[finite], marker="." if finite.sum() < 60 else None,
                    linewidth=1.3)
            shown = y[finite]
            if ylabel != "ACC" and shown.min() > 0 and shown.max() > 10 * shown.min():
                ax.set_yscale("log")  # losses and changed fractions span decades
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if xlabel == "iteration" and warmup_iterations > 0:
                ax.axvline(warmup_iterations, color="0.5", linestyle=":", linewidth=1)
        if tol is not None and records:
            axes[1, 0].axhline(tol, color="firebrick", linestyle="--", linewidth=1,
                               label=f"tol {tol:g}")
            axes[1, 0].legend(fontsize=8)
        figure.tight_layout()
    return Path(path)


# --------------------------------------------------------------------------------- cluster sizes

def cluster_sizes_png(sizes: Sequence[int], path: str | Path,
                      mapping: Mapping[Any, Any] | None = None) -> Path:
    """Images per cluster as bars, with the equal share dashed and empty clusters' 0 in red.

    ``mapping`` (cluster -> label) adds the mapped label under each cluster id.
    """
    counts = _int_vector(sizes, "cluster sizes")
    k = len(counts)
    mapped = {int(c): int(label) for c, label in (mapping or {}).items()}
    with _figure(path, max(5.0, 1.5 + 0.32 * k), 4.0) as figure:
        ax = figure.add_subplot()
        if k == 0:
            _no_data(ax)
            return Path(path)
        total = int(counts.sum())
        ax.bar(range(k), counts, color=cluster_colours(k), edgecolor="0.3", linewidth=0.5)
        ax.axhline(total / k, color="0.4", linestyle="--", linewidth=1,
                   label=f"equal share ({total / k:,.0f})")
        fontsize = 8 if k <= 15 else 6
        for cluster, count in enumerate(counts):
            if k <= 40 or count == 0:
                ax.text(cluster, count, f"{count:,}", ha="center",
                        va="bottom", fontsize=fontsize,
                        color="firebrick" if count == 0 else "black")
        ax.set_xticks(range(k), [f"{c}\n→{mapped[c]}" if c in mapped else str(c)
                                 for c in range(k)], fontsize=fontsize)
        ax.set_xlim(-0.6, k - 0.4)
        ax.set_ylim(0, max(1, counts.max()) * 1.12)
        ax.set_xlabel("cluster (→ mapped label)" if mapped else "cluster")
        ax.set_ylabel("images")
        ax.set_title(f"Cluster sizes: {total:,} images in {k} clusters, "
                     f"{int(np.sum(counts == 0))} empty")
        ax.legend(fontsize=8, loc="best")
        figure.tight_layout()
    return Path(path)
