"""The six pipeline steps as plain functions over file paths.

A KFP component hands its artifact paths to one of these and copies the returned metadata onto
its output artifacts; everything else a step does (validation, training, MLflow logging, timing,
progress) is here, where it can be tested without Kubeflow.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dec_lib import tracking
from dec_lib.config import RunConfig
from dec_lib.data import load_dataset, read_dataset, save_dataset
from dec_lib.errors import DecError
from dec_lib.progress import Progress, setup_logging

log = logging.getLogger("dec.steps")


ERROR_FILE_ENV = "DEC_ERROR_FILE"


def user_errors_exit(step: Callable) -> Callable:
    """Turn a user mistake into one log line and exit status 1 instead of a traceback.

    The line also goes to ``$DEC_ERROR_FILE`` when set, so that the local CLI, which sees only
    that a task failed, can tell the user why.
    """

    @functools.wraps(step)
    def wrapper(*args, **kwargs):
        try:
            return step(*args, **kwargs)
        except DecError as error:
            message = f"{step.__name__}: {error}"
            log.error(message)
            if os.environ.get(ERROR_FILE_ENV):
                with open(os.environ[ERROR_FILE_ENV], "a", encoding="utf-8") as f:
                    f.write(message + "\n")
            sys.exit(1)

    return wrapper


@dataclass
class TrackingContext:
    """Which MLflow run a step writes to."""

    run_key: str
    tracking_uri: str = ""
    experiment: str = tracking.DEFAULT_EXPERIMENT

    def step(self, name: str):
        return tracking.step_run(self.run_key, name, tracking_uri=self.tracking_uri or None,
                                 experiment=self.experiment)


def config_from_sections(seed: int = 0, **sections: dict[str, Any]) -> RunConfig:
    """A validated RunConfig from the sections a step receives; the others keep defaults."""
    return RunConfig.from_dict({"seed": seed, **sections})


def _log_section(config: RunConfig, *sections: str) -> None:
    flat = config.flat()
    tracking.log_params({k: v for k, v in flat.items()
                         if k.split(".")[0] in sections or k == "seed"})


def fingerprint(x: np.ndarray) -> str:
    """Content hash of the images: equal data, equal fingerprint, whatever file it came from."""
    digest = hashlib.sha256()
    digest.update(str(x.shape).encode())
    digest.update(np.ascontiguousarray(x).tobytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------- ingest

@user_errors_exit
def ingest(data: dict, seed: int, out_path: str, ctx: TrackingContext) -> dict[str, Any]:
    setup_logging()
    config = config_from_sections(seed, data=data)
    with ctx.step("ingest"):
        _log_section(config, "data")
        dataset = load_dataset(config.data.dataset, n_samples=config.data.n_samples,
                               seed=config.seed)
        save_dataset(dataset, out_path)
        meta = {
            "n_samples": dataset.n_samples,
            "n_features": dataset.n_features,
            "image_shape": list(dataset.image_shape),
            "has_labels": dataset.y is not None,
            "n_labels": len(np.unique(dataset.y)) if dataset.y is not None else 0,
            "fingerprint": fingerprint(dataset.x),
            "source": dataset.source,
        }
        tracking.log_params({"data.fingerprint": meta["fingerprint"],
                             "data.n_images": dataset.n_samples,
                             "data.image_shape": "x".join(map(str, dataset.image_shape))})
        log.info("ingest: %d images of %s from %s (labels: %s)", dataset.n_samples,
                 "x".join(map(str, dataset.image_shape)), dataset.source,
                 "yes" if dataset.y is not None else "no")
    return meta


# -------------------------------------------------------------------------------------- pretrain

@user_errors_exit
def pretrain(dataset_path: str, autoencoder: dict, pretrain: dict, seed: int, out_path: str,
             ctx: TrackingContext, checkpoint_root: str = "") -> dict[str, Any]:
    setup_logging()
    from dec_lib.autoencoder import build_autoencoder, pretrain_autoencoder
    from dec_lib.model_io import save_model
    from dec_lib.seeding import seed_everything

    config = config_from_sections(seed, autoencoder=autoencoder, pretrain=pretrain)
    with ctx.step("pretrain"):
        _log_section(config, "autoencoder", "pretrain")
        dataset = read_dataset(dataset_path)
        seed_everything(config.seed)
        model = build_autoencoder(dataset.n_features, config.autoencoder)
        checkpoint_dir = None
        if checkpoint_root:
            # Keyed by the work, not the run: a rerun of the same work resumes.
            key = hashlib.sha256(json.dumps(
                [fingerprint(dataset.x), autoencoder, pretrain, seed], sort_keys=True,
                default=str).encode()).hexdigest()[:16]
            checkpoint_dir = Path(checkpoint_root) / f"pretrain-{key}"
        progress = Progress(config.pretrain.epochs)

        def on_epoch(epoch: int, epochs: int, loss: float, seconds: float) -> None:
            tracking.log_metrics({"pretrain.loss": loss, "pretrain.epoch_seconds": seconds},
                                 step=epoch)
            log.info("pretrain: epoch %s, loss %.5f, %.1fs/epoch", progress.line(epoch), loss,
                     seconds)

        result = pretrain_autoencoder(model, dataset.x, config.pretrain, seed=config.seed,
                                      image_shape=dataset.image_shape,
                                      checkpoint_dir=checkpoint_dir, on_epoch=on_epoch)
        save_model(model, Path(out_path) / "autoencoder.keras")
        final_loss = result.losses[-1] if result.losses else float("nan")
        if result.losses:
            tracking.log_metrics({"pretrain.final_loss": final_loss})
        tracking.log_metrics({"pretrain.resumed_from_epoch": result.resumed_from_epoch})
    return {"epochs": config.pretrain.epochs, "final_loss": final_loss,
            "resumed_from_epoch": result.resumed_from_epoch}


# ----------------------------------------------------------------------------------- kmeans_init

@user_errors_exit
def kmeans_init(dataset_path: str, autoencoder_path: str, init: dict, dec: dict, seed: int,
                out_path: str, ctx: TrackingContext) -> dict[str, Any]:
    setup_logging()
    from sklearn.metrics import normalized_mutual_info_score

    from dec_lib.autoencoder import embed, encoder_of
    from dec_lib.metrics import cluster_accuracy
    from dec_lib.model_io import load_model
    from dec_lib.training import init_centres
    from dec_lib.validation import check_n_clusters

    config = config_from_sections(seed, init=init, dec=dec)
    with ctx.step("kmeans_init"):
        _log_section(config, "init")
        log.info("kmeans_init: %s on the embedding",
                 "UMAP + Gaussian mixture" if config.init.method == "umap" else "K-Means")
        dataset = read_dataset(dataset_path)
        check_n_clusters(config.dec.n_clusters, dataset.n_samples)
        embedding = embed(encoder_of(load_model(autoencoder_path)), dataset.x)
        result = init_centres(embedding, config.dec.n_clusters, config.init, seed=config.seed)
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


def write_init(path: str, centres: np.ndarray, labels: np.ndarray) -> None:
    """Centres and the initial assignment in one .npz, written atomically."""
    tmp = f"{path}.partial"
    with open(tmp, "wb") as f:
        np.savez(f, centres=centres, labels=labels)
    os.replace(tmp, path)


def read_init(path: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as saved:
        return saved["centres"], saved["labels"]


# ------------------------------------------------------------------------------------- dec_train

@user_errors_exit
def dec_train(dataset_path: str, autoencoder_path: str, centres_path: str, dec: dict,
              seed: int, out_path: str, ctx: TrackingContext) -> dict[str, Any]:
    setup_logging()
    from dec_lib.autoencoder import encoder_of
    from dec_lib.metrics import cluster_accuracy
    from dec_lib.model_io import load_model, save_model
    from dec_lib.seeding import seed_everything
    from dec_lib.training import build_dec_model, train_dec

    config = config_from_sections(seed, dec=dec)
    with ctx.step("dec_train"):
        _log_section(config, "dec")
        dataset = read_dataset(dataset_path)
        seed_everything(config.seed)
        centres, initial_labels = read_init(centres_path)
        model = build_dec_model(encoder_of(load_model(autoencoder_path)), centres,
                                config.dec.alpha)
        progress = Progress(config.dec.maxiter)

        def on_update(record, labels, maxiter) -> None:
            metrics = {"dec.delta_label": record.delta_label}
            if record.iteration > 0:
                metrics["dec.loss"] = record.loss
            extra = ""
            if dataset.y is not None:  # monitoring only
                metrics["dec.acc"] = cluster_accuracy(dataset.y, labels)
                extra = f", acc {metrics['dec.acc']:.4f}"
            tracking.log_metrics(metrics, step=record.iteration)
            log.info("dec_train: iteration %s, changed %.4f, loss %.5f%s",
                     progress.line(record.iteration), record.delta_label, record.loss, extra)

        result = train_dec(model, dataset.x, config.dec, initial_labels=initial_labels,
                           on_update=on_update)
        save_model(model, Path(out_path) / "dec.keras")
        tracking.log_metrics({"dec_train.iterations": result.iterations,
                              "dec_train.converged": float(result.converged)})
        log.info("dec_train: %s after %d iterations",
                 "converged" if result.converged else "stopped at maxiter", result.iterations)
    return {"iterations": result.iterations, "converged": result.converged}


# -------------------------------------------------------------------------------------- evaluate

@dataclass
class Evaluation:
    metrics: dict[str, float]
    confusion: list[list[int]] | None
    labels: list[int] | None
    mapping: dict[int, int]
    cluster_sizes: list[int]


@user_errors_exit
def evaluate(dataset_path: str, model_path: str, report_path: str,
             ctx: TrackingContext) -> Evaluation:
    setup_logging()
    from sklearn.metrics import silhouette_score

    from dec_lib.autoencoder import embed
    from dec_lib.metrics import evaluate_clustering
    from dec_lib.model_io import load_model
    from dec_lib.training import CLUSTERING_LAYER

    with ctx.step("evaluate"):
        dataset = read_dataset(dataset_path)
        model = load_model(model_path)
        import keras

        encoder = keras.Model(model.input, model.get_layer(CLUSTERING_LAYER).input)
        embedding = embed(encoder, dataset.x)
        q = embed(model, dataset.x)
        clusters = q.argmax(axis=1)
        n_clusters = q.shape[1]
        sizes = np.bincount(clusters, minlength=n_clusters)
        metrics: dict[str, float] = {
            "mean_confidence": float(q.max(axis=1).mean()),
            "n_empty_clusters": float(np.sum(sizes == 0)),
        }
        if len(np.unique(clusters)) > 1:
            sample = np.random.default_rng(0).choice(len(embedding),
                                                     min(len(embedding), 5000), replace=False)
            metrics["silhouette"] = float(silhouette_score(embedding[sample], clusters[sample]))
        confusion = labels = None
        mapping: dict[int, int] = {}
        if dataset.y is not None:
            report = evaluate_clustering(dataset.y, clusters)
            metrics.update(acc=report.acc, nmi=report.nmi, ari=report.ari)
            confusion, labels, mapping = report.confusion, report.labels, report.mapping
        tracking.log_metrics(metrics)
        evaluation = Evaluation(metrics=metrics, confusion=confusion, labels=labels,
                                mapping=mapping, cluster_sizes=sizes.tolist())
        Path(report_path).write_text(json.dumps({
            "metrics": metrics, "confusion": confusion, "labels": labels,
            "mapping": {str(k): v for k, v in mapping.items()},
            "cluster_sizes": evaluation.cluster_sizes,
            "image_shape": list(dataset.image_shape),
        }, indent=2))
        tracking.log_metrics({f"cluster_size.{i}": s for i, s in enumerate(sizes)})
        log.info("evaluate: %s", ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return evaluation


# -------------------------------------------------------------------------------------- register

@user_errors_exit
def register(model_path: str, report_path: str, model_name: str, work_dir: str,
             ctx: TrackingContext) -> dict[str, Any]:
    setup_logging()
    from dec_lib.serving import log_and_register

    report = json.loads(Path(report_path).read_text())
    with ctx.step("register") as run:
        registration = log_and_register(
            model_path,
            mapping={int(k): int(v) for k, v in report["mapping"].items()},
            image_shape=tuple(report["image_shape"]),
            model_name=model_name,
            metrics={k: v for k, v in report["metrics"].items() if k in ("acc", "nmi", "ari")},
            run_id=run.info.run_id,
            work_dir=work_dir,
        )
        tracking.log_params({"register.model_name": model_name})
        import mlflow

        mlflow.set_tags({"registered.version": registration.version,
                         "registered.alias": registration.alias})
    return {
        "model_name": registration.model_name,
        "model_version": registration.version,
        "alias": registration.alias,
        "model_uri": registration.model_uri,
        "mlflow_run_id": registration.run_id,
        "tracking_uri": tracking.resolve_tracking_uri(ctx.tracking_uri or None),
    }
