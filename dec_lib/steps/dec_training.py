"""The ``dec_train`` step: DEC's self-training from the initial centres."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dec_lib import names
from dec_lib.data.datasets import read_dataset
from dec_lib.mlops import tracking
from dec_lib.steps.common import (
    TrackingContext,
    begin,
    config_from_sections,
    log,
    log_sections,
    user_errors_exit,
)
from dec_lib.steps.initialising import read_init


@user_errors_exit
def dec_train(dataset_path: str, autoencoder_path: str, centres_path: str, dec: dict,
              seed: int, out_path: str, ctx: TrackingContext,
              data_unchanged: bool = False) -> dict[str, Any]:
    """Self-train the pretrained encoder and the initial centres; save the DEC model.

    Parameters
    ----------
    data_unchanged : bool, default False
        A warm start on the champion's own data: the champion is handed on as it is.
    """
    begin(names.DEC_TRAIN, tensorflow=not data_unchanged)
    from dec_lib.reports.run_report import save_dec_history

    config = config_from_sections(seed, dec=dec)
    if data_unchanged:  # a warm start on the champion's own data: keep the champion as it is
        import shutil

        config = config.with_overrides({"dec.maxiter": 0})
        with ctx.step(names.DEC_TRAIN):
            log_sections(config, "dec")
            Path(out_path).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(autoencoder_path) / "autoencoder.keras",
                            Path(out_path) / "dec.keras")
            save_dec_history(out_path, [], config.dec.tol, config.dec.warmup_iterations)
            tracking.log_metrics({"dec_train.iterations": 0, "dec_train.converged": 1.0})
            log.info("dec_train: the data is unchanged; the champion is kept as it is")
        return {"iterations": 0, "converged": True, "data_unchanged": True}
    from dec_lib.core.phases import self_train
    from dec_lib.model.saving import load_model, save_model

    with ctx.step(names.DEC_TRAIN) as run:
        log_sections(config, "dec")
        dataset = read_dataset(dataset_path)
        centres, initial_labels = read_init(centres_path)
        trained = self_train(load_model(autoencoder_path), centres, initial_labels,
                             dataset.x, config.dec, seed=config.seed, y=dataset.y,
                             image_shape=dataset.image_shape, tracker=tracking.MlflowTracker())
        save_model(trained.model, Path(out_path) / "dec.keras")
        save_dec_history(out_path, trained.updates, config.dec.tol, config.dec.warmup_iterations)
    # The seed and the run's record let a choice among members (``choose_member``) pair this
    # model with its autoencoder and adopt its MLflow record.
    return {"iterations": trained.result.iterations, "converged": trained.result.converged,
            "data_unchanged": data_unchanged, "seed": config.seed,
            "tracking": tracking.run_record(run.info.run_id)}
