"""The phases: what each returns and reports, and one seed giving one model through both drivers
(``DEC.fit`` in one process, and the pipeline's steps over their artifact files)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from mlflow import MlflowClient

from dec_lib import steps
from dec_lib.config.sections import (
    AutoencoderConfig,
    DECConfig,
    InitConfig,
    PretrainConfig,
    RunConfig,
)
from dec_lib.core import phases
from dec_lib.core.estimator import DEC
from dec_lib.core.tracker import NullTracker
from dec_lib.model.autoencoder import encoder_of
from dec_lib.model.dec_model import (
    build_dec_model,
    cluster_centres,
    cluster_labels,
    clustering_layer,
    mean_of_members,
    soft_assignments,
)
from dec_lib.model.saving import load_model

N = 300
TINY = AutoencoderConfig(hidden_dims=[32, 32, 64], embedding_dim=5)


class RecordingTracker:
    """A fake tracker that keeps every call, in order."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.metrics: list[tuple[str, float, int | None]] = []
        self.artifacts: list[tuple[str, str]] = []

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.metrics.extend((name, float(value), step) for name, value in metrics.items())

    def log_artifacts(self, folder, artifact_path: str) -> None:
        self.artifacts.append((str(folder), artifact_path))

    def steps_of(self, name: str) -> list[int | None]:
        return [step for metric, _, step in self.metrics if metric == name]

    def names(self) -> set[str]:
        return {name for name, _, _ in self.metrics}


def _config(seed: int = 0) -> RunConfig:
    """Tiny, but every phase's randomness in play: shifted batches, K-Means restarts, and a
    warm-up towards the initial assignment."""
    return RunConfig(
        seed=seed,
        autoencoder=TINY,
        pretrain=PretrainConfig(epochs=2, batch_size=100, optimizer="adam", learning_rate=1e-3,
                                checkpoint_every=0, augment_shift=1),
        init=InitConfig(n_init=2),
        dec=DECConfig(n_clusters=4, maxiter=12, update_interval=4, batch_size=100, tol=0.0,
                      warmup_iterations=4),
    ).validate()


@pytest.fixture(scope="module")
def digits(mnist_subset) -> tuple[np.ndarray, np.ndarray]:
    """300 digits as 28x28 images (the layout ingest infers from the file) and their labels."""
    return mnist_subset.x[:N].reshape(-1, 28, 28), mnist_subset.y[:N]


# --- one seed, one model, whichever driver -----------------------------------------------------


def test_one_seed_gives_the_same_model_through_dec_fit_and_through_the_steps(digits, tmp_path,
                                                                             monkeypatch):
    images, labels = digits
    config = _config(seed=3)
    fit_tracker = RecordingTracker()
    fitted = DEC(config).fit(images, labels, tracker=fit_tracker)

    np.savez(tmp_path / "digits.npz", x=images, y=labels)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ctx = steps.TrackingContext("same-seed", uri, "phases")
    sections = config.to_dict()
    ingested = steps.ingest({"dataset": str(tmp_path / "digits.npz")}, config.seed,
                            str(tmp_path / "data.npz"), ctx)

    def hashed_again(*args):
        raise AssertionError("the data was hashed again after ingest")

    # Ingest hashed the data; the later steps take its fingerprint instead of hashing again.
    for module in ("pretraining", "evaluating"):
        monkeypatch.setattr(f"dec_lib.steps.{module}.fingerprint", hashed_again)
    steps.pretrain(str(tmp_path / "data.npz"), sections["autoencoder"], sections["pretrain"],
                   config.seed, str(tmp_path / "ae"), ctx,
                   data_fingerprint=ingested["fingerprint"])
    steps.init_clusters(str(tmp_path / "data.npz"), str(tmp_path / "ae"), sections["init"],
                      sections["dec"], config.seed, str(tmp_path / "init.npz"), ctx)
    steps.dec_train(str(tmp_path / "data.npz"), str(tmp_path / "ae"), str(tmp_path / "init.npz"),
                    sections["dec"], config.seed, str(tmp_path / "dec"), ctx)
    steps.evaluate(str(tmp_path / "data.npz"), str(tmp_path / "dec"),
                   str(tmp_path / "report.json"), ctx, data_fingerprint=ingested["fingerprint"])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["fingerprint"] == ingested["fingerprint"]

    piped = load_model(tmp_path / "dec")
    for ours, theirs in zip(fitted.model_.get_weights(), piped.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(fitted.predict(images), DEC.load(tmp_path / "dec").predict(
        images))

    # Both drivers report the same things under the same names.
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("phases").experiment_id])
    assert fit_tracker.names() <= set(run.data.metrics)
    for name in ("pretrain.loss", "dec.acc", "dec.delta_label"):
        assert fit_tracker.steps_of(name) == [m.step for m in
                                              client.get_metric_history(run.info.run_id, name)]
    assert run.data.metrics["dec.acc"] == pytest.approx(
        [v for name, v, _ in fit_tracker.metrics if name == "dec.acc"][-1])


def test_another_seed_gives_another_model(digits):
    images, _ = digits
    config = _config(seed=0)
    config.dec.maxiter = 0
    first = DEC(config).fit(images).model_.get_weights()
    config.seed = 1
    other = DEC(config).fit(images).model_.get_weights()
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


# --- pretrain ----------------------------------------------------------------------------------


def test_pretrain_depends_on_its_seed_not_on_what_ran_before(digits):
    images, _ = digits
    x = images.reshape(N, -1)
    config = _config()
    first = phases.pretrain(x, config.autoencoder, config.pretrain, seed=5)
    np.random.default_rng().random(10)  # whatever ran in between
    again = phases.pretrain(x, config.autoencoder, config.pretrain, seed=5)
    for a, b in zip(first.autoencoder.get_weights(), again.autoencoder.get_weights(),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert first.losses == again.losses and len(first.losses) == first.epochs == 2
    assert first.final_loss == first.losses[-1]


def test_pretrain_reports_each_epoch_at_most_max_epoch_reports_times(digits, monkeypatch):
    images, _ = digits
    monkeypatch.setattr(phases, "MAX_EPOCH_REPORTS", 2)
    tracker = RecordingTracker()
    config = PretrainConfig(epochs=5, batch_size=100, optimizer="adam", learning_rate=1e-3,
                            checkpoint_every=0)
    pretrained = phases.pretrain(images.reshape(N, -1)[:100], TINY, config, seed=0,
                                 tracker=tracker)
    # Every second epoch, and the last one whatever the stride.
    assert tracker.steps_of("pretrain.loss") == [2, 4, 5]
    assert tracker.steps_of("pretrain.epoch_seconds") == [2, 4, 5]
    final = [v for name, v, _ in tracker.metrics if name == "pretrain.final_loss"]
    assert final == [pretrained.final_loss]
    assert ("pretrain.resumed_from_epoch", 0.0, None) in tracker.metrics


# --- initialise --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pretrained(digits) -> phases.Pretrained:
    images, _ = digits
    config = _config()
    return phases.pretrain(images.reshape(N, -1), config.autoencoder, config.pretrain, seed=0)


def test_initialise_scores_against_labels_only_when_given(digits, pretrained):
    images, labels = digits
    x = images.reshape(N, -1)
    blind = phases.initialise(pretrained.autoencoder, x, 4, InitConfig(n_init=2), seed=0)
    tracker = RecordingTracker()
    seen = phases.initialise(pretrained.autoencoder, x, 4, InitConfig(n_init=2), seed=0,
                             y=labels, tracker=tracker)
    assert set(blind.metrics) == {"init_clusters.inertia"}
    assert set(seen.metrics) == {"init_clusters.inertia", "init_clusters.acc", "init_clusters.nmi"}
    assert tracker.names() == set(seen.metrics)
    # The labels are reported, never used: the clusters are the same.
    np.testing.assert_array_equal(blind.init.labels, seen.init.labels)
    assert not seen.warm_start and seen.init.centres.shape == (4, TINY.embedding_dim)


def test_initialise_from_a_dec_model_keeps_its_centres(digits, pretrained):
    images, _ = digits
    x = images.reshape(N, -1)
    centres = np.random.default_rng(0).normal(size=(4, TINY.embedding_dim)).astype(np.float32)
    model = build_dec_model(encoder_of(pretrained.autoencoder), centres, alpha=1.0)
    initialised = phases.initialise(model, x, 4, InitConfig(), seed=0)
    assert initialised.warm_start
    np.testing.assert_array_equal(initialised.init.centres, centres)
    assert initialised.init.labels.shape == (N,)


def test_a_mean_of_members_warm_starts_and_self_trains_as_one_model(digits, pretrained):
    """Retraining continues a champion that is the mean of members: the same kind of model,
    every member's encoder and centres trained on the mean q."""
    images, _ = digits
    x = images.reshape(N, -1)
    rng = np.random.default_rng(0)
    members = [build_dec_model(encoder_of(pretrained.autoencoder),
                               rng.normal(size=(4, TINY.embedding_dim)).astype(np.float32),
                               alpha=1.0) for _ in range(2)]
    champion = mean_of_members(members, [np.arange(4), np.array([3, 2, 1, 0])])
    initialised = phases.initialise(champion, x, 4, InitConfig(), seed=0)
    assert initialised.warm_start
    assert initialised.init.centres.shape == (2, 4, TINY.embedding_dim)
    np.testing.assert_array_equal(initialised.init.labels,
                                  cluster_labels(soft_assignments(champion, x)))
    config = DECConfig(n_clusters=4, maxiter=8, update_interval=4, batch_size=100, tol=0.0)
    trained = phases.self_train(champion, initialised.init.centres, initialised.init.labels, x,
                                config, seed=0)
    assert clustering_layer(trained.model).members == 2
    assert trained.model.output_shape == (None, 4)
    assert not np.array_equal(cluster_centres(trained.model), initialised.init.centres)


# --- self_train and evaluate -------------------------------------------------------------------


def test_self_train_reports_every_update_and_acc_only_with_labels(digits, pretrained):
    images, labels = digits
    x = images.reshape(N, -1)
    init = phases.initialise(pretrained.autoencoder, x, 4, InitConfig(n_init=2), seed=0).init
    config = DECConfig(n_clusters=4, maxiter=8, update_interval=4, batch_size=100, tol=0.0)
    tracker = RecordingTracker()
    trained = phases.self_train(pretrained.autoencoder, init.centres, init.labels,
                                x, config, seed=0, y=labels, tracker=tracker)
    assert tracker.steps_of("dec.delta_label") == [0, 4, 8]
    assert tracker.steps_of("dec.loss") == [4, 8]  # no loss before the first interval
    assert tracker.steps_of("dec.acc") == [0, 4, 8]
    assert ("dec_train.iterations", 8.0, None) in tracker.metrics
    assert [row["iteration"] for row in trained.updates] == [0, 4, 8]
    assert all("acc" in row for row in trained.updates)
    assert not np.array_equal(cluster_centres(trained.model), init.centres)

    blind = phases.self_train(pretrained.autoencoder, init.centres, init.labels, x,
                              config, seed=0, tracker=NullTracker())
    assert not any("acc" in row for row in blind.updates)


def test_evaluate_scores_the_model_and_reports_cluster_sizes(digits, pretrained):
    images, labels = digits
    x = images.reshape(N, -1)
    centres = np.random.default_rng(1).normal(size=(3, TINY.embedding_dim)).astype(np.float32)
    model = build_dec_model(encoder_of(pretrained.autoencoder), centres, alpha=1.0)
    tracker = RecordingTracker()
    scores = phases.evaluate(model, x, labels, tracker=tracker)
    assert sum(scores.cluster_sizes) == N and len(scores.cluster_sizes) == 3
    assert {"acc", "nmi", "ari", "mean_confidence", "n_empty_clusters"} <= set(scores.metrics)
    assert {f"cluster_size.{k}" for k in range(3)} <= tracker.names()
    assert scores.q.shape == (N, 3) and scores.embedding.shape == (N, TINY.embedding_dim)
    assert "acc" not in phases.evaluate(model, x).metrics
