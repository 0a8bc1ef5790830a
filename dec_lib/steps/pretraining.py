"""The ``pretrain`` step: the autoencoder, or the champion's model on a warm start."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dec_lib import names
from dec_lib.config import RunConfig
from dec_lib.data.datasets import read_dataset
from dec_lib.errors import DecError
from dec_lib.mlops import tracking
from dec_lib.steps.common import (
    TrackingContext,
    begin,
    config_from_sections,
    fingerprint,
    finite,
    log,
    log_sections,
    user_errors_exit,
)


@user_errors_exit
def pretrain(dataset_path: str, autoencoder: dict, pretrain: dict, seed: int, out_path: str,
             ctx: TrackingContext, checkpoint_root: str = "", registry: dict | None = None,
             model_name: str = "", data_fingerprint: str = "") -> dict[str, Any]:
    """Pretrain the autoencoder on the ingested data, or hand on the champion (warm start).

    Parameters
    ----------
    data_fingerprint : str, optional
        The data's fingerprint as ingest recorded it (its output's metadata), so that the
        images are not hashed again; computed here when not given.
    """
    begin(names.PRETRAIN)
    config = config_from_sections(seed, autoencoder=autoencoder, pretrain=pretrain,
                                  registry=registry or {})
    dataset = read_dataset(dataset_path)
    # The work, which keys both the resumable checkpoint and (when cached) the MLflow run.
    data_fingerprint = data_fingerprint or fingerprint(dataset.x, dataset.y)
    work = [data_fingerprint, autoencoder, pretrain, seed, registry or {}]
    ctx = ctx.own(names.PRETRAIN, *work)
    with ctx.step(names.PRETRAIN) as run:
        log_sections(config, "autoencoder", "pretrain", "registry")
        meta = None
        if config.registry.warm_start:
            meta = _warm_start(dataset, data_fingerprint, model_name, Path(out_path))
        if meta is None:
            checkpoint_dir = None
            if checkpoint_root:
                key = hashlib.sha256(json.dumps(work[:4], sort_keys=True, default=str)
                                     .encode()).hexdigest()[:16]
                checkpoint_dir = Path(checkpoint_root) / f"pretrain-{key}"
            meta = _pretrain(dataset, config, Path(out_path), checkpoint_dir)
    return {**finite(meta), "seed": config.seed, "tracking": tracking.run_record(run.info.run_id)}


def _pretrain(dataset, config: RunConfig, out: Path, checkpoint_dir: Path | None
              ) -> dict[str, Any]:
    from dec_lib.core.phases import pretrain as pretrain_phase
    from dec_lib.model.saving import save_model
    from dec_lib.reports.run_report import save_pretrain_losses

    pretrained = pretrain_phase(dataset.x, config.autoencoder, config.pretrain, seed=config.seed,
                                image_shape=dataset.image_shape, checkpoint_dir=checkpoint_dir,
                                tracker=tracking.MlflowTracker())
    save_model(pretrained.autoencoder, out / "autoencoder.keras")
    save_pretrain_losses(out, pretrained.losses)
    return {"epochs": pretrained.epochs, "final_loss": pretrained.final_loss,
            "resumed_from_epoch": pretrained.resumed_from_epoch}


def _warm_start(dataset, data_fingerprint: str, model_name: str, out: Path
                ) -> dict[str, Any] | None:
    """Hand on the champion's DEC model instead of pretraining; None when there is no champion.

    Its encoder is what DEC continues from, and its clustering layer the initial centres
    (``init_clusters`` recognises it). When the data equals the champion's (same fingerprint),
    the later steps train and register nothing.
    """
    import shutil
    import tempfile

    from dec_lib.mlops.registry import warm_start_from_champion
    from dec_lib.reports.run_report import save_pretrain_losses

    with tempfile.TemporaryDirectory() as tmp:
        champion = warm_start_from_champion(model_name, data_fingerprint, tmp)
        if champion is None:
            log.info("pretrain: no champion of %r yet; pretraining from scratch", model_name)
            return None
        out.mkdir(parents=True, exist_ok=True)
        if champion.data_unchanged:
            # The champion's own data: hand its file on untouched, without loading TensorFlow
            # (the later steps keep it as it is).
            shutil.copyfile(champion.model_file, out / "autoencoder.keras")
        else:
            from dec_lib.model.saving import load_model, save_model

            model = load_model(champion.model_file)
            if model.input_shape[-1] != dataset.n_features:
                raise DecError(f"the champion of {model_name!r} (version {champion.version}) "
                               f"takes {model.input_shape[-1]} pixels per image; this data has "
                               f"{dataset.n_features}")
            save_model(model, out / "autoencoder.keras")
    save_pretrain_losses(out, [])  # nothing was pretrained
    tracking.log_params({"pretrain.warm_start_from": f"{model_name}/{champion.version}"})
    tracking.log_metrics({"pretrain.data_unchanged": float(champion.data_unchanged)})
    log.info("pretrain: warm start from %s version %s%s", model_name, champion.version,
             "; the data is unchanged, nothing will be trained" if champion.data_unchanged
             else "")
    return {"epochs": 0, "final_loss": None, "resumed_from_epoch": 0,
            "warm_start": True, "champion_version": champion.version,
            "data_unchanged": champion.data_unchanged}
