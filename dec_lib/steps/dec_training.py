"""The ``dec_train`` step: DEC's self-training from the initial centres."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dec_lib.data.datasets import read_dataset
from dec_lib.mlops import tracking
from dec_lib.runtime.progress import Progress
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
    begin("dec_train", tensorflow=not data_unchanged)
    from dec_lib.reports.run_report import save_dec_history

    config = config_from_sections(seed, dec=dec)
    if data_unchanged:  # a warm start on the champion's own data: keep the champion as it is
        import shutil

        config = config.with_overrides({"dec.maxiter": 0})
        with ctx.step("dec_train"):
            log_sections(config, "dec")
            Path(out_path).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(autoencoder_path) / "autoencoder.keras",
                            Path(out_path) / "dec.keras")
            save_dec_history(out_path, [], config.dec.tol, config.dec.warmup_iterations)
            tracking.log_metrics({"dec_train.iterations": 0, "dec_train.converged": 1.0})
            log.info("dec_train: the data is unchanged; the champion is kept as it is")
        return {"iterations": 0, "converged": True, "data_unchanged": True}
    from dec_lib.model.autoencoder import encoder_of
    from dec_lib.model.metrics import cluster_accuracy
    from dec_lib.model.saving import load_model, save_model
    from dec_lib.model.training import build_dec_model, train_dec
    from dec_lib.runtime.seeding import seed_everything

    with ctx.step("dec_train"):
        log_sections(config, "dec")
        dataset = read_dataset(dataset_path)
        seed_everything(config.seed)
        centres, initial_labels = read_init(centres_path)
        model = build_dec_model(encoder_of(load_model(autoencoder_path)), centres,
                                config.dec.alpha)
        progress = Progress(config.dec.maxiter)
        history: list[dict[str, Any]] = []

        def on_update(record, labels, maxiter) -> None:
            metrics = {"dec.delta_label": record.delta_label}
            if record.iteration > 0:
                metrics["dec.loss"] = record.loss
            extra = ""
            if dataset.y is not None:  # monitoring only
                metrics["dec.acc"] = cluster_accuracy(dataset.y, labels)
                extra = f", acc {metrics['dec.acc']:.4f}"
            tracking.log_metrics(metrics, step=record.iteration)
            history.append({"iteration": record.iteration, "loss": record.loss,
                            "delta_label": record.delta_label,
                            **({"acc": metrics["dec.acc"]} if "dec.acc" in metrics else {})})
            log.info("dec_train: iteration %s, changed %.4f, loss %.5f%s",
                     progress.line(record.iteration), record.delta_label, record.loss, extra)

        result = train_dec(model, dataset.x, config.dec, initial_labels=initial_labels,
                           on_update=on_update)
        save_model(model, Path(out_path) / "dec.keras")
        save_dec_history(out_path, history, config.dec.tol, config.dec.warmup_iterations)
        tracking.log_metrics({"dec_train.iterations": result.iterations,
                              "dec_train.converged": float(result.converged)})
        log.info("dec_train: %s after %d iterations",
                 "converged" if result.converged else "stopped at maxiter", result.iterations)
    return {"iterations": result.iterations, "converged": result.converged,
            "data_unchanged": data_unchanged}
