"""The ``kmeans_init`` step: the initial centres on the autoencoder's embedding."""

from __future__ import annotations

from typing import Any

import numpy as np

from dec_lib.data.datasets import read_dataset
from dec_lib.mlops import tracking
from dec_lib.runtime.files import replaced
from dec_lib.steps.common import (
    TrackingContext,
    begin,
    config_from_sections,
    log,
    log_sections,
    user_errors_exit,
)


@user_errors_exit
def kmeans_init(dataset_path: str, autoencoder_path: str, init: dict, dec: dict, seed: int,
                out_path: str, ctx: TrackingContext,
                upstream: dict[str, dict] | None = None,
                data_unchanged: bool = False) -> dict[str, Any]:
    """``upstream``: the cacheable steps' MLflow records by step name, adopted into this run.
    ``data_unchanged``: a warm start on the champion's own data, where nothing is trained."""
    begin("kmeans_init", tensorflow=not data_unchanged)
    config = config_from_sections(seed, init=init, dec=dec)
    if data_unchanged:
        with ctx.step("kmeans_init"):
            for step, record in (upstream or {}).items():
                tracking.adopt(step, record)
            write_init(out_path, np.zeros((0, 0), np.float32), np.zeros(0, np.int64))
            log.info("kmeans_init: the data is unchanged; the champion keeps its centres")
        return {"n_clusters": config.dec.n_clusters, "skipped": True}
    from sklearn.metrics import normalized_mutual_info_score

    from dec_lib.data.validation import check_n_clusters
    from dec_lib.model.autoencoder import embed, encoder_of
    from dec_lib.model.metrics import cluster_accuracy
    from dec_lib.model.saving import load_model
    from dec_lib.model.training import CLUSTERING_LAYER, init_centres

    with ctx.step("kmeans_init"):
        for step, record in (upstream or {}).items():
            tracking.adopt(step, record)
        log_sections(config, "init")
        log.info("kmeans_init: %s on the embedding",
                 "UMAP + Gaussian mixture" if config.init.method == "umap" else "K-Means")
        dataset = read_dataset(dataset_path)
        check_n_clusters(config.dec.n_clusters, dataset.n_samples)
        model = load_model(autoencoder_path)
        if CLUSTERING_LAYER in {layer.name for layer in model.layers}:
            result = _champion_init(model, dataset.x)
            log.info("kmeans_init: warm start, the champion's %d centres", len(result.centres))
        else:
            embedding = embed(encoder_of(model), dataset.x)
            result = init_centres(embedding, config.dec.n_clusters, config.init,
                                  seed=config.seed)
        write_init(out_path, result.centres, result.labels)
        metrics = {"kmeans_init.inertia": result.inertia}
        if dataset.y is not None:  # reported for comparison only; never fed back
            metrics["kmeans_init.acc"] = cluster_accuracy(dataset.y, result.labels)
            metrics["kmeans_init.nmi"] = float(normalized_mutual_info_score(dataset.y,
                                                                            result.labels))
        tracking.log_metrics(metrics)
        log.info("kmeans_init: %d clusters, inertia %.1f%s", config.dec.n_clusters,
                 result.inertia, "".join(f", {k.split('.')[1]} {v:.4f}"
                                         for k, v in metrics.items() if "inertia" not in k))
    return {"n_clusters": config.dec.n_clusters, **{k.split(".")[1]: v
                                                     for k, v in metrics.items()}}


def _champion_init(model, x: np.ndarray):
    """A warm start's initialisation: the champion's centres and its assignment of ``x``."""
    import time

    from dec_lib.model.autoencoder import embed, encoder_of
    from dec_lib.model.clustering import soft_assignment
    from dec_lib.model.training import CLUSTERING_LAYER, InitResult

    started = time.perf_counter()
    layer = model.get_layer(CLUSTERING_LAYER)
    centres = layer.get_weights()[0]
    embedding = embed(encoder_of(model), x)  # one pass; q follows from it and the centres
    labels = soft_assignment(embedding, centres, layer.alpha).argmax(axis=1)
    inertia = float(((embedding - centres[labels]) ** 2).sum())
    return InitResult(centres=centres, labels=labels.astype(np.int64), inertia=inertia,
                      seconds=time.perf_counter() - started)


def write_init(path: str, centres: np.ndarray, labels: np.ndarray) -> None:
    """Centres and the initial assignment in one .npz, written atomically."""
    with replaced(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, centres=centres, labels=labels)


def read_init(path: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as saved:
        return saved["centres"], saved["labels"]
