"""The ``init_clusters`` step: the initial centres on the autoencoder's embedding."""

from __future__ import annotations

from typing import Any

import numpy as np

from dec_lib import names
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
def init_clusters(dataset_path: str, autoencoder_path: str, init: dict, dec: dict, seed: int,
                out_path: str, ctx: TrackingContext,
                upstream: dict[str, dict] | None = None,
                data_unchanged: bool = False) -> dict[str, Any]:
    """Find the initial clusters on the pretrained embedding (or take the champion's).

    Parameters
    ----------
    upstream : dict, optional
        The cacheable steps' MLflow records by step name, adopted into this run.
    data_unchanged : bool, default False
        A warm start on the champion's own data, where nothing is trained.
    """
    begin(names.INIT_CLUSTERS, tensorflow=not data_unchanged)
    config = config_from_sections(seed, init=init, dec=dec)
    if data_unchanged:
        with ctx.step(names.INIT_CLUSTERS):
            for step, record in (upstream or {}).items():
                tracking.adopt(step, record)
            write_init(out_path, np.zeros((0, 0), np.float32), np.zeros(0, np.int64))
            log.info("init_clusters: the data is unchanged; the champion keeps its centres")
        return {"n_clusters": config.dec.n_clusters, "skipped": True}
    from dec_lib.core.phases import initialise
    from dec_lib.model.saving import load_model

    with ctx.step(names.INIT_CLUSTERS):
        for step, record in (upstream or {}).items():
            tracking.adopt(step, record)
        log_sections(config, "init")
        dataset = read_dataset(dataset_path)
        initialised = initialise(load_model(autoencoder_path), dataset.x, config.dec.n_clusters,
                                 config.init, seed=config.seed, y=dataset.y,
                                 tracker=tracking.MlflowTracker())
        write_init(out_path, initialised.init.centres, initialised.init.labels)
    return {"n_clusters": config.dec.n_clusters, **{k.split(".")[1]: v
                                                     for k, v in initialised.metrics.items()}}


def write_init(path: str, centres: np.ndarray, labels: np.ndarray) -> None:
    """Centres and the initial assignment in one .npz, written atomically.

    Parameters
    ----------
    path : str
        The file (a KFP Model artifact's path).
    centres : numpy.ndarray
        Initial centres.
    labels : numpy.ndarray
        The initial assignment.
    """
    with replaced(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, centres=centres, labels=labels)


def read_init(path: str) -> tuple[np.ndarray, np.ndarray]:
    """The centres and initial assignment ``write_init`` wrote.

    Parameters
    ----------
    path : str
        The .npz file.

    Returns
    -------
    tuple of numpy.ndarray
        (centres, labels).
    """
    with np.load(path, allow_pickle=False) as saved:
        return saved["centres"], saved["labels"]
