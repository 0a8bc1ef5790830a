"""The ``ingest`` step: load and check the images once, for every later step."""

from __future__ import annotations

from typing import Any

import numpy as np

from dec_lib import names
from dec_lib.data.datasets import load_dataset_with_provenance, save_dataset
from dec_lib.errors import DecError
from dec_lib.mlops import tracking
from dec_lib.steps.common import (
    TrackingContext,
    begin,
    config_from_sections,
    fingerprint,
    log,
    log_sections,
    user_errors_exit,
)


@user_errors_exit
def ingest(data: dict, seed: int, out_path: str, ctx: TrackingContext,
           n_clusters: int = 0) -> dict[str, Any]:
    """Load and validate the images once; every later step reads the file this writes.

    ``n_clusters`` (``dec.n_clusters``) is checked against the images here, before pretraining
    spends minutes on data that cannot give that many clusters.
    """
    begin(names.INGEST, tensorflow=False)
    from dec_lib.data.validation import check_n_clusters

    # KFP parameters travel as protobuf numbers, so an int may arrive as 10.0.
    if isinstance(n_clusters, float) and n_clusters.is_integer():
        n_clusters = int(n_clusters)
    config = config_from_sections(seed, data=data)
    ctx = ctx.own(names.INGEST, data, seed, *([n_clusters] if n_clusters else []))
    with ctx.step(names.INGEST) as run:
        log_sections(config, "data")
        dataset, provenance = load_dataset_with_provenance(
            config.data.dataset, n_samples=config.data.n_samples, seed=config.seed)
        if n_clusters:
            try:
                check_n_clusters(n_clusters, dataset.n_samples)
            except DecError as error:
                raise DecError(f"{dataset.source}: {error}") from None
        save_dataset(dataset, out_path)
        meta = {
            "n_samples": dataset.n_samples,
            "n_features": dataset.n_features,
            "image_shape": list(dataset.image_shape),
            "has_labels": dataset.y is not None,
            "n_labels": len(np.unique(dataset.y)) if dataset.y is not None else 0,
            "fingerprint": fingerprint(dataset.x, dataset.y),
            "source": dataset.source,
        }
        params = {"data.fingerprint": meta["fingerprint"], "data.n_images": dataset.n_samples,
                  "data.image_shape": "x".join(map(str, dataset.image_shape))}
        if provenance.sha256 is not None:
            meta["source_sha256"] = provenance.sha256
            params.update({"data.source_sha256": provenance.sha256,
                           "data.source_bytes": provenance.n_bytes,
                           "data.source_files": provenance.n_files})
        tracking.log_params(params)
        log.info("ingest: %d images of %s from %s (labels: %s)", dataset.n_samples,
                 "x".join(map(str, dataset.image_shape)), dataset.source,
                 "yes" if dataset.y is not None else "no")
    return {**meta, "tracking": tracking.run_record(run.info.run_id)}
