"""Shared fixtures: real MNIST digits and an IDX writer, reused across test modules."""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dec_lib.data.datasets import Dataset, load_dataset

# IDX type codes by numpy dtype (the format stores every multi-byte value big-endian).
_IDX_CODES = {
    np.dtype("uint8"): 0x08,
    np.dtype("int8"): 0x09,
    np.dtype("int16"): 0x0B,
    np.dtype("int32"): 0x0C,
    np.dtype("float32"): 0x0D,
    np.dtype("float64"): 0x0E,
}


def _write_idx(path: Path | str, array: np.ndarray, *, gz: bool | None = None) -> Path:
    """Write ``array`` as an IDX file; gzip'd when ``gz`` is true (default: name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    code = _IDX_CODES[array.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if gz is None:
        gz = path.name.endswith(".gz")
    path.write_bytes(gzip.compress(payload, compresslevel=1) if gz else payload)
    return path


@pytest.fixture(scope="session")
def write_idx() -> Callable[..., Path]:
    """``write_idx(path, array, gz=None) -> path``: write an MNIST-format IDX file."""
    return _write_idx


@pytest.fixture(scope="session")
def mnist_subset() -> Dataset:
    """2,000 real MNIST digits with labels (a sorted random subset, seed 0)."""
    return load_dataset("mnist", n_samples=2000, seed=0)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small DEC model and the report the evaluate step would write for it: enough to
    exercise registration without training."""
    from dec_lib.config import AutoencoderConfig
    from dec_lib.model.autoencoder import build_autoencoder, encoder_of
    from dec_lib.model.dec_model import build_dec_model
    from dec_lib.model.saving import save_model
    from dec_lib.runtime.seeding import seed_everything

    root = tmp_path_factory.mktemp("tiny-model")
    seed_everything(0)
    autoencoder = build_autoencoder(784, AutoencoderConfig(hidden_dims=[32], embedding_dim=4))
    model = build_dec_model(encoder_of(autoencoder), np.eye(4, dtype=np.float32)[:3], alpha=1.0)
    save_model(model, root / "dec" / "dec.keras")
    report = root / "report.json"
    report.write_text(json.dumps({"metrics": {"acc": 0.5}, "mapping": {"0": 1, "1": 2, "2": 3},
                                  "image_shape": [28, 28], "fingerprint": "0123456789abcdef"}))
    return root / "dec", report


def register_small_dec(root: Path, mnist_subset: Dataset, model_name: str,
                       n_clusters: int = 4) -> tuple[str, str, dict[int, int]]:
    """Train a tiny DEC on 300 digits in seconds and register it in a SQLite store in ``root``,
    as the register step does; returns (tracking URI, model URI, cluster-to-label mapping)."""
    import os

    import mlflow

    from dec_lib.config.sections import (
        AutoencoderConfig,
        DECConfig,
        InitConfig,
        PretrainConfig,
        RunConfig,
    )
    from dec_lib.core.estimator import DEC
    from dec_lib.mlops import tracking
    from dec_lib.mlops.registry import log_and_register
    from dec_lib.model.metrics import cluster_to_label

    config = RunConfig(
        seed=0,
        autoencoder=AutoencoderConfig(hidden_dims=[64, 128], embedding_dim=4),
        pretrain=PretrainConfig(epochs=2, batch_size=100, optimizer="adam", learning_rate=1e-3,
                                checkpoint_every=0),
        init=InitConfig(n_init=1),
        dec=DECConfig(n_clusters=n_clusters, maxiter=20, update_interval=10, batch_size=100,
                      tol=0.0),
    )
    x, y = mnist_subset.x[:300], mnist_subset.y[:300]
    dec = DEC(config).fit(x)
    dec.save(root / "dec.keras")
    mapping = cluster_to_label(y, dec.labels_)
    uri = tracking.sqlite_uri(root)
    experiment = mlflow.MlflowClient(uri).create_experiment(
        model_name, artifact_location=tracking.artifact_root_for(uri))
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(experiment_id=experiment) as run:
            registration = log_and_register(
                root / "dec.keras", mapping=mapping, image_shape=(28, 28),
                model_name=model_name, metrics={}, run_id=run.info.run_id,
                work_dir=root / "register")
    finally:
        mlflow.set_tracking_uri(previous)
    return uri, registration.model_uri, mapping
