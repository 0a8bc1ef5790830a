"""The six pipeline steps as plain functions over file paths.

A KFP component hands its artifact paths to one of these and copies the returned metadata onto
its output artifacts; everything else a step does (validation, training, MLflow logging, timing,
progress) is here, where it can be tested without Kubeflow.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import hashlib
import json
import logging
import os
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dec_lib import devices, thread_pools, tracking
from dec_lib.config import RunConfig
from dec_lib.data import load_dataset_with_provenance, read_dataset, save_dataset
from dec_lib.errors import DecError
from dec_lib.progress import Progress, setup_logging

log = logging.getLogger("dec.steps")


ERROR_FILE_ENV = "DEC_ERROR_FILE"

_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES,
                   errno.EPERM}


def user_errors_exit(step: Callable) -> Callable:
    """Turn a user mistake into one log line and exit status 1 instead of a traceback.

    The line also goes to ``$DEC_ERROR_FILE`` when set, so that the local CLI, which sees only
    that a task failed, can tell the user why.
    """

    @functools.wraps(step)
    def wrapper(*args, **kwargs):
        try:
            return step(*args, **kwargs)
        except tracking.StepInterrupted as interrupted:
            # step_run has marked the run KILLED; the usual exit status of a signalled process.
            _report(f"{step.__name__}: {interrupted}; MLflow run marked KILLED")
            sys.exit(128 + interrupted.signum)
        except (DecError, OSError) as error:
            if isinstance(error, OSError) and not isinstance(error, DecError):
                if not error.filename and error.errno not in _STORAGE_ERRNOS:
                    raise  # not about storage: a real bug, keep the traceback
                # Disk full, quota, read-only: the user's environment, not a bug of ours.
                error = f"{error.filename or 'writing output'}: {error.strerror or error}"
            message = f"{step.__name__}: {error}"
            if is_permanent(error) and "not retried" not in message:
                message += " (not retried: a retry cannot fix this)"
            _report(message)
            sys.exit(1)

    return wrapper


def is_permanent(error: object) -> bool:
    """A user mistake (bad data, settings, names): the same inputs fail the same way again.

    Tracking failures and storage errors (a full disk) may pass, so they stay retryable.
    """
    return isinstance(error, DecError) and not isinstance(error, tracking.TrackingError)


def _report(message: str) -> None:
    """One line to the log and to ``$DEC_ERROR_FILE``, which the local CLI shows the user."""
    log.error(message)
    if os.environ.get(ERROR_FILE_ENV):
        with open(os.environ[ERROR_FILE_ENV], "a", encoding="utf-8") as f:
            f.write(message + "\n")


@dataclass
class TrackingContext:
    """Which MLflow run a step writes to."""

    run_key: str
    tracking_uri: str = ""
    experiment: str = tracking.DEFAULT_EXPERIMENT
    owns_run: bool = False
    """The run is this step's own (a cacheable step's, see ``own``), not the pipeline's."""

    LAST_STEP: typing.ClassVar[str] = "register"

    def step(self, name: str):
        """The step's MLflow run; only the last step, or a step's own run, ends it FINISHED."""
        return tracking.step_run(self.run_key, name, tracking_uri=self.tracking_uri or None,
                                 experiment=self.experiment,
                                 final=self.owns_run or name == self.LAST_STEP)

    def own(self, step: str, *work: Any) -> TrackingContext:
        """Without a pipeline run key (a cacheable step), a run of the step's own, keyed by
        its work: a rerun of the same work logs to the same run."""
        if self.run_key:
            return self
        key = hashlib.sha256(json.dumps(work, sort_keys=True, default=str).encode())
        return dataclasses.replace(self, run_key=f"{step}-{key.hexdigest()[:16]}", owns_run=True)


def begin(step: str, tensorflow: bool = True) -> None:
    """What every step does first, in this order.

    Logging; thread pools sized to the pod's CPU limit, which must happen before TensorFlow and
    numba start their pools; then, on a step given GPUs, the check that TensorFlow sees them,
    before any data is read, so a node without a working GPU fails in seconds with one line.
    """
    setup_logging()
    thread_pools.size_thread_pools(tensorflow=tensorflow)
    devices.check_gpus(step)


def config_from_sections(seed: int = 0, **sections: dict[str, Any]) -> RunConfig:
    """A validated RunConfig from the sections a step receives; the others keep defaults."""
    return RunConfig.from_dict({"seed": seed, **sections})


def _log_section(config: RunConfig, *sections: str) -> None:
    flat = config.flat()
    tracking.log_params({k: v for k, v in flat.items()
                         if k.split(".")[0] in sections or k == "seed"})


def finite(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with NaN and infinities as None: KFP artifact metadata refuses them."""
    return {k: None if isinstance(v, float) and not np.isfinite(v) else v
            for k, v in meta.items()}


def fingerprint(x: np.ndarray, y: np.ndarray | None = None) -> str:
    """Content hash of the images and their labels: equal data, equal fingerprint, whatever
    file or URI it came from.

    It covers everything ingest hands on, so an object replaced under the same URI is new data
    whenever it changes what the steps read: other pixels, more images, or other labels (which
    the promotion gate scores against). Bytes that decode to the same data (a PNG re-encoded)
    leave it unchanged; ingest records the digest of the raw bytes read as
    ``data.source_sha256`` beside it.
    """
    digest = hashlib.sha256()
    digest.update(str(x.shape).encode())
    digest.update(np.ascontiguousarray(x).tobytes())
    if y is not None:
        digest.update(b"labels")
        digest.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------- ingest

@user_errors_exit
def ingest(data: dict, seed: int, out_path: str, ctx: TrackingContext,
           n_clusters: int = 0) -> dict[str, Any]:
    """Load and validate the images once; every later step reads the file this writes.

    ``n_clusters`` (``dec.n_clusters``) is checked against the images here, before pretraining
    spends minutes on data that cannot give that many clusters.
    """
    begin("ingest", tensorflow=False)
    from dec_lib.validation import check_n_clusters

    # KFP parameters travel as protobuf numbers, so an int may arrive as 10.0.
    if isinstance(n_clusters, float) and n_clusters.is_integer():
        n_clusters = int(n_clusters)
    config = config_from_sections(seed, data=data)
    ctx = ctx.own("ingest", data, seed, *([n_clusters] if n_clusters else []))
    with ctx.step("ingest") as run:
        _log_section(config, "data")
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


# -------------------------------------------------------------------------------------- pretrain

@user_errors_exit
def pretrain(dataset_path: str, autoencoder: dict, pretrain: dict, seed: int, out_path: str,
             ctx: TrackingContext, checkpoint_root: str = "", registry: dict | None = None,
             model_name: str = "") -> dict[str, Any]:
    begin("pretrain")
    config = config_from_sections(seed, autoencoder=autoencoder, pretrain=pretrain,
                                  registry=registry or {})
    dataset = read_dataset(dataset_path)
    # The work, which keys both the resumable checkpoint and (when cached) the MLflow run.
    data_fingerprint = fingerprint(dataset.x, dataset.y)
    work = [data_fingerprint, autoencoder, pretrain, seed, registry or {}]
    ctx = ctx.own("pretrain", *work)
    with ctx.step("pretrain") as run:
        _log_section(config, "autoencoder", "pretrain", "registry")
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
    return {**finite(meta), "tracking": tracking.run_record(run.info.run_id)}


def _pretrain(dataset, config: RunConfig, out: Path, checkpoint_dir: Path | None
              ) -> dict[str, Any]:
    from dec_lib.autoencoder import build_autoencoder, effective_epochs, pretrain_autoencoder
    from dec_lib.model_io import save_model
    from dec_lib.run_report import save_pretrain_losses
    from dec_lib.seeding import seed_everything

    seed_everything(config.seed)
    model = build_autoencoder(dataset.n_features, config.autoencoder)
    epochs = effective_epochs(config.pretrain, dataset.n_samples)
    progress = Progress(epochs)

    # At most about 200 reports: a small data set may run a thousand short epochs, and each
    # report is a write to the tracking store and a line on the terminal.
    every = max(1, epochs // 200)

    def on_epoch(epoch: int, epochs: int, loss: float, seconds: float) -> None:
        if epoch % every and epoch != epochs:
            return
        tracking.log_metrics({"pretrain.loss": loss, "pretrain.epoch_seconds": seconds},
                             step=epoch)
        log.info("pretrain: epoch %s, loss %.5f, %.2fs/epoch", progress.line(epoch), loss,
                 seconds)

    result = pretrain_autoencoder(model, dataset.x, config.pretrain, seed=config.seed,
                                  image_shape=dataset.image_shape,
                                  checkpoint_dir=checkpoint_dir, on_epoch=on_epoch)
    save_model(model, out / "autoencoder.keras")
    save_pretrain_losses(out, result.losses)
    final_loss = result.losses[-1] if result.losses else float("nan")
    if result.losses:
        tracking.log_metrics({"pretrain.final_loss": final_loss})
    tracking.log_metrics({"pretrain.resumed_from_epoch": result.resumed_from_epoch})
    return {"epochs": epochs, "final_loss": final_loss,
            "resumed_from_epoch": result.resumed_from_epoch}


DATA_FINGERPRINT_TAG = "data.fingerprint"


def _warm_start(dataset, data_fingerprint: str, model_name: str, out: Path
                ) -> dict[str, Any] | None:
    """Hand on the champion's DEC model instead of pretraining; None when there is no champion.

    Its encoder is what DEC continues from, and its clustering layer the initial centres
    (``kmeans_init`` recognises it). When the data equals the champion's (same fingerprint),
    the later steps train and register nothing.
    """
    import shutil
    import tempfile

    from dec_lib.run_report import save_pretrain_losses
    from dec_lib.serving import champion_version, download_keras_model

    if not model_name:
        raise DecError("registry.warm_start needs the registered model's name")
    champion = champion_version(model_name)
    if champion is None:
        log.info("pretrain: no champion of %r yet; pretraining from scratch", model_name)
        return None
    unchanged = (champion.tags or {}).get(DATA_FINGERPRINT_TAG) == data_fingerprint
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        champion_file = download_keras_model(model_name, champion.version, tmp)
        if unchanged:
            # The champion's own data: hand its file on untouched, without loading TensorFlow
            # (the later steps keep it as it is).
            shutil.copyfile(champion_file, out / "autoencoder.keras")
        else:
            from dec_lib.model_io import load_model, save_model

            model = load_model(champion_file)
            if model.input_shape[-1] != dataset.n_features:
                raise DecError(f"the champion of {model_name!r} (version {champion.version}) "
                               f"takes {model.input_shape[-1]} pixels per image; this data has "
                               f"{dataset.n_features}")
            save_model(model, out / "autoencoder.keras")
    save_pretrain_losses(out, [])  # nothing was pretrained
    tracking.log_params({"pretrain.warm_start_from": f"{model_name}/{champion.version}"})
    tracking.log_metrics({"pretrain.data_unchanged": float(unchanged)})
    log.info("pretrain: warm start from %s version %s%s", model_name, champion.version,
             "; the data is unchanged, nothing will be trained" if unchanged else "")
    return {"epochs": 0, "final_loss": None, "resumed_from_epoch": 0,
            "warm_start": True, "champion_version": str(champion.version),
            "data_unchanged": unchanged}


# ----------------------------------------------------------------------------------- kmeans_init

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

    from dec_lib.autoencoder import embed, encoder_of
    from dec_lib.metrics import cluster_accuracy
    from dec_lib.model_io import load_model
    from dec_lib.training import CLUSTERING_LAYER, init_centres
    from dec_lib.validation import check_n_clusters

    with ctx.step("kmeans_init"):
        for step, record in (upstream or {}).items():
            tracking.adopt(step, record)
        _log_section(config, "init")
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

    from dec_lib.autoencoder import embed, encoder_of
    from dec_lib.clustering import soft_assignment
    from dec_lib.training import CLUSTERING_LAYER, InitResult

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
              seed: int, out_path: str, ctx: TrackingContext,
              data_unchanged: bool = False) -> dict[str, Any]:
    begin("dec_train", tensorflow=not data_unchanged)
    from dec_lib.run_report import save_dec_history

    config = config_from_sections(seed, dec=dec)
    if data_unchanged:  # a warm start on the champion's own data: keep the champion as it is
        import shutil

        config = config.with_overrides({"dec.maxiter": 0})
        with ctx.step("dec_train"):
            _log_section(config, "dec")
            Path(out_path).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(autoencoder_path) / "autoencoder.keras",
                            Path(out_path) / "dec.keras")
            save_dec_history(out_path, [], config.dec.tol, config.dec.warmup_iterations)
            tracking.log_metrics({"dec_train.iterations": 0, "dec_train.converged": 1.0})
            log.info("dec_train: the data is unchanged; the champion is kept as it is")
        return {"iterations": 0, "converged": True, "data_unchanged": True}
    from dec_lib.autoencoder import encoder_of
    from dec_lib.metrics import cluster_accuracy
    from dec_lib.model_io import load_model, save_model
    from dec_lib.seeding import seed_everything
    from dec_lib.training import build_dec_model, train_dec

    with ctx.step("dec_train"):
        _log_section(config, "dec")
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


# -------------------------------------------------------------------------------------- evaluate

@dataclass
class Evaluation:
    metrics: dict[str, float]
    confusion: list[list[int]] | None
    labels: list[int] | None
    mapping: dict[int, int]
    cluster_sizes: list[int]
    report_files: dict[str, Path] = dataclasses.field(default_factory=dict)
    """The figures, ``report.md`` and ``report.html`` by file name (gone if written to a
    temporary folder)."""


@user_errors_exit
def evaluate(dataset_path: str, model_path: str, report_path: str, ctx: TrackingContext,
             autoencoder_path: str = "", figures_dir: str = "",
             data_unchanged: bool = False) -> Evaluation:
    """Score the clustering, draw the figures and write the report, logged to MLflow.

    The training curves come from the files the training steps left next to their models
    (``autoencoder_path`` for pretraining); ``figures_dir`` keeps the figures and the report,
    else they live in a temporary folder only long enough to reach MLflow. With
    ``data_unchanged`` (a warm start on the champion's own data) nothing was trained, so
    nothing is scored: the report says so, and the champion's run holds its figures.
    """
    begin("evaluate")
    import tempfile

    if data_unchanged:
        return _evaluate_unchanged(dataset_path, report_path, ctx, figures_dir)

    from dec_lib.autoencoder import embed
    from dec_lib.metrics import evaluate_clustering, sampled_silhouette
    from dec_lib.model_io import load_model
    from dec_lib.run_report import read_dec_history, read_pretrain_losses, write_run_report
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
            metrics["silhouette"] = sampled_silhouette(embedding, clusters)
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
            "fingerprint": fingerprint(dataset.x, dataset.y),
        }, indent=2))
        tracking.log_metrics({f"cluster_size.{i}": s for i, s in enumerate(sizes)})
        log.info("evaluate: %s", ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(figures_dir or scratch)
            evaluation.report_files = write_run_report(
                folder, title=f"DEC clustering report: {dataset.source}",
                metrics=metrics, cluster_sizes=evaluation.cluster_sizes, confusion=confusion,
                labels=labels, mapping=mapping, x=dataset.x, image_shape=dataset.image_shape,
                embedding=embedding, q=q, y=dataset.y,
                pretrain_losses=read_pretrain_losses(autoencoder_path) if autoencoder_path
                else [],
                dec_history=read_dec_history(model_path))
            _log_report(folder)
        log.info("evaluate: report and %d figures in MLflow under report/",
                 len(evaluation.report_files) - 2)
    return evaluation


def _evaluate_unchanged(dataset_path: str, report_path: str, ctx: TrackingContext,
                        figures_dir: str) -> Evaluation:
    import html
    import tempfile

    with ctx.step("evaluate"):
        dataset = read_dataset(dataset_path)
        data_fingerprint = fingerprint(dataset.x, dataset.y)
        Path(report_path).write_text(json.dumps({
            "metrics": {}, "confusion": None, "labels": None, "mapping": {},
            "cluster_sizes": [], "image_shape": list(dataset.image_shape),
            "fingerprint": data_fingerprint, "data_unchanged": True}, indent=2))
        evaluation = Evaluation(metrics={}, confusion=None, labels=None, mapping={},
                                cluster_sizes=[])
        title = f"DEC clustering report: {dataset.source}"
        note = (f"The data ({dataset.n_samples} images, fingerprint {data_fingerprint}) is the "
                "data the champion was trained on: nothing was trained, so nothing was scored. "
                "The champion's own run holds its scores and figures.")
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(figures_dir or scratch)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "report.md").write_text(f"# {title}\n\n{note}\n")
            (folder / "report.html").write_text(
                f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
                f"</title></head><body><h1>{html.escape(title)}</h1><p>{html.escape(note)}</p>"
                "</body></html>\n")
            evaluation.report_files = {name: folder / name for name in ("report.md",
                                                                        "report.html")}
            _log_report(folder)
        log.info("evaluate: the data is unchanged; nothing to score")
    return evaluation


def _log_report(folder: Path) -> None:
    import mlflow

    tracking.with_retries(lambda: mlflow.log_artifacts(str(folder), artifact_path="report"),
                          "log the report")


# -------------------------------------------------------------------------------------- register

@user_errors_exit
def register(model_path: str, report_path: str, model_name: str, work_dir: str,
             ctx: TrackingContext, dataset_path: str = "", registry: dict | None = None,
             data_unchanged: bool = False) -> dict[str, Any]:
    """Register the model and let the champion gate alias it (see ``dec_lib.promotion``).

    With ``dataset_path`` the candidate and the current champion are scored on that data; without
    it the first version becomes champion and later ones challengers. The new version records
    its confidence on that data (its training data) as ``drift.reference.*`` tags, and, when a
    champion recorded one, the data's drift from the champion's training data is logged
    (``dec_lib.drift``): figures for a reader, not inputs to the gate.
    """
    begin("register")
    import mlflow

    from dec_lib.serving import CHAMPION, champion_version, log_and_register

    config = config_from_sections(0, registry=registry or {})
    report = json.loads(Path(report_path).read_text())
    result = {"tracking_uri": tracking.resolve_tracking_uri(ctx.tracking_uri or None),
              "model_name": model_name}
    with ctx.step("register") as run:
        result["mlflow_run_id"] = run.info.run_id
        tracking.log_params({"register.model_name": model_name})
        if data_unchanged:
            champion = champion_version(model_name)
            reason = f"data unchanged since champion version {champion.version}; nothing trained"
            mlflow.set_tags({"gate.decision": "skipped", "gate.reason": reason})
            log.info("register: %s", reason)
            return {**result, "model_version": str(champion.version), "alias": CHAMPION,
                    "model_uri": f"models:/{model_name}@{CHAMPION}", "decision": "skipped",
                    "reason": reason}
        gate, decisions, drifts, reference = _promotion_gate(model_path, dataset_path,
                                                             model_name, config)
        registration = log_and_register(
            model_path,
            mapping={int(k): int(v) for k, v in report["mapping"].items()},
            image_shape=tuple(report["image_shape"]),
            model_name=model_name,
            metrics={k: v for k, v in report["metrics"].items()
                     if k in ("acc", "nmi", "ari", "silhouette")},
            run_id=run.info.run_id,
            work_dir=work_dir,
            tags={DATA_FINGERPRINT_TAG: report.get("fingerprint", ""),
                  **(reference.tags() if reference else {})},
            **({"gate": gate} if gate else {}),
        )
        if drifts:
            _record_drift(drifts[-1], model_name, registration.version)
            result["drift"] = drifts[-1].metrics()
        mlflow.set_tags({"registered.version": registration.version,
                         "registered.alias": registration.alias})
        result.update(model_version=registration.version, alias=registration.alias,
                      model_uri=registration.model_uri,
                      decision="promoted" if registration.alias == CHAMPION else "challenger")
        if decisions:
            decision = decisions[-1]
            tracking.log_metrics(decision.metrics())
            mlflow.set_tags({"gate.decision": result["decision"], "gate.reason": decision.reason,
                             "gate.criterion": decision.criterion,
                             "gate.champion_version": decision.champion_version or "none"})
            result.update(reason=decision.reason, criterion=decision.criterion,
                          candidate_score=decision.candidate,
                          champion_score=decision.champion,
                          champion_version=decision.champion_version)
            log.info("register: version %s is %s: %s", registration.version,
                     registration.alias, decision.reason)
    return result


def _promotion_gate(model_path: str, dataset_path: str, model_name: str, config: RunConfig):
    """A gate for ``log_and_register`` that scores both models on the data, its decisions,
    the drift of the data from the champion's training data, and the candidate's reference."""
    if not dataset_path:
        return None, [], [], None
    import tempfile

    from dec_lib.autoencoder import embed
    from dec_lib.drift import measure_drift, reference_from_tags, reference_of
    from dec_lib.model_io import load_model
    from dec_lib.promotion import criterion_for, decide, score_model
    from dec_lib.serving import download_keras_model

    dataset = read_dataset(dataset_path)
    criterion = criterion_for(config.registry.promotion_criterion, dataset.y is not None)
    candidate_model = load_model(model_path)
    candidate = score_model(candidate_model, dataset.x, dataset.y, criterion)
    # This data is the candidate's training data: what later runs measure drift against.
    reference = reference_of(embed(candidate_model, dataset.x))
    decisions, drifts = [], []

    def gate(champion) -> bool:
        score = None
        if champion is not None:
            with tempfile.TemporaryDirectory() as tmp:
                model = load_model(download_keras_model(model_name, champion.version, tmp))
            score = score_model(model, dataset.x, dataset.y, criterion)
            champion_reference = reference_from_tags(champion.tags)
            if champion_reference is None:
                log.info("register: champion version %s has no recorded training confidence "
                         "(registered before drift was measured); no drift figures",
                         champion.version)
            else:
                drifts.append(measure_drift(embed(model, dataset.x), champion_reference))
        decisions.append(decide(candidate, score, criterion=criterion,
                                tolerance=config.registry.promotion_tolerance,
                                champion_version=None if champion is None
                                else str(champion.version),
                                champion_registered=_registered_score(champion, criterion),
                                max_champion_drop=config.registry.max_champion_drop))
        return decisions[-1].promote

    return gate, decisions, drifts, reference


def _registered_score(champion, criterion: str) -> float | None:
    """The champion's ``criterion`` on its own data, from its version tags (None: absent)."""
    try:
        return float((champion.tags or {})[criterion]) if champion is not None else None
    except (KeyError, TypeError, ValueError):
        return None


def _record_drift(drift, model_name: str, version: str) -> None:
    """The drift figures on the run (metrics, and ``gate.drift.*`` tags beside the gate's
    decision) and on the new version, where a person reading the registry looks."""
    import mlflow

    tracking.log_metrics(drift.metrics())
    tags = {f"gate.{k}": f"{v:.4f}" for k, v in drift.metrics().items()}
    mlflow.set_tags(tags)
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        tracking.with_retries(lambda k=key, v=value: client.set_model_version_tag(
            model_name, version, k, v), f"tag {model_name} version {version}")
    log.info("register: drift from the champion's training data: %s", drift.describe())
