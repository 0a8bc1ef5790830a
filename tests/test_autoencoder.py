"""The autoencoder's shape and initialisation, and pretraining: progress, seeds, resuming."""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pytest

from dec_lib.config import AutoencoderConfig, PretrainConfig
from dec_lib.model.autoencoder import (
    EMBEDDING_LAYER,
    PretrainResult,
    build_autoencoder,
    embed,
    encoder_of,
    pretrain_autoencoder,
    pretrain_learning_rate,
)
from dec_lib.runtime.seeding import seed_everything

TINY = AutoencoderConfig(hidden_dims=[64, 64, 128], embedding_dim=10)


def _pretrain_config(epochs: int, checkpoint_every: int = 1) -> PretrainConfig:
    return PretrainConfig(epochs=epochs, batch_size=100, optimizer="adam", learning_rate=3e-3,
                          checkpoint_every=checkpoint_every)


def _dense_layers(model: keras.Model) -> list[keras.layers.Dense]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


# --- architecture ----------------------------------------------------------------------------


def test_default_architecture_is_d_500_500_2000_10_and_its_mirror():
    model = build_autoencoder(784, AutoencoderConfig())
    dense = _dense_layers(model)
    assert [layer.units for layer in dense] == [500, 500, 2000, 10, 2000, 500, 500, 784]
    assert model.input_shape == (None, 784)
    assert model.output_shape == (None, 784)
    activations = [layer.get_config()["activation"] for layer in dense]
    # ReLU inside; linear embedding and reconstruction
    assert activations == ["relu"] * 3 + ["linear"] + ["relu"] * 3 + ["linear"]
    assert dense[3].name == EMBEDDING_LAYER


def test_every_layer_uses_variance_scaling_fan_in_uniform_one_third():
    model = build_autoencoder(20, TINY)
    for layer in _dense_layers(model):
        init = layer.kernel_initializer
        assert isinstance(init, keras.initializers.VarianceScaling)
        config = init.get_config()
        assert config["scale"] == pytest.approx(1 / 3)
        assert config["mode"] == "fan_in"
        assert config["distribution"] == "uniform"


def test_initial_weights_respect_the_variance_scaling_limit():
    seed_everything(0)
    model = build_autoencoder(784, AutoencoderConfig())
    kernel = model.get_layer("encoder_0").kernel.numpy()
    limit = np.sqrt(3 * (1 / 3) / 784)  # uniform(-sqrt(3*scale/fan_in), +sqrt(...))
    assert np.abs(kernel).max() <= limit + 1e-7
    assert np.abs(kernel).max() > 0.9 * limit


def test_encoder_shares_weights_with_the_autoencoder():
    autoencoder = build_autoencoder(12, AutoencoderConfig(hidden_dims=[8], embedding_dim=3))
    encoder = encoder_of(autoencoder)
    assert encoder.output_shape == (None, 3)
    x = np.random.default_rng(0).random((5, 12), dtype=np.float32)
    before = embed(encoder, x)
    layer = autoencoder.get_layer(EMBEDDING_LAYER)
    layer.set_weights([w + 1.0 for w in layer.get_weights()])
    assert not np.allclose(embed(encoder, x), before)


def test_embed_handles_several_batches_and_empty_input():
    autoencoder = build_autoencoder(12, AutoencoderConfig(hidden_dims=[8], embedding_dim=3))
    encoder = encoder_of(autoencoder)
    x = np.random.default_rng(0).random((10, 12), dtype=np.float32)
    np.testing.assert_allclose(embed(encoder, x, batch_size=3), embed(encoder, x), atol=1e-6)
    assert embed(encoder, x[:0]).shape == (0, 3)


def test_same_seed_builds_identical_weights_and_another_seed_does_not():
    def weights(seed):
        seed_everything(seed)
        return build_autoencoder(784, TINY).get_weights()

    first, again, other = weights(3), weights(3), weights(4)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, c) for a, c in zip(first, other, strict=True))


# --- pretraining -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def x500(mnist_subset) -> np.ndarray:
    return mnist_subset.x[:500]


@pytest.fixture(scope="module")
def straight_run(x500, tmp_path_factory) -> tuple[list[np.ndarray], PretrainResult]:
    """Four epochs in one go, seed 0, checkpointing every epoch."""
    seed_everything(0)
    autoencoder = build_autoencoder(784, TINY)
    seen: list[tuple[int, int]] = []
    result = pretrain_autoencoder(
        autoencoder, x500, _pretrain_config(4), seed=0,
        checkpoint_dir=tmp_path_factory.mktemp("straight"),
        on_epoch=lambda epoch, epochs, loss, seconds: seen.append((epoch, epochs)),
    )
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    return autoencoder.get_weights(), result


def test_pretraining_reduces_the_reconstruction_loss(straight_run):
    _, result = straight_run
    assert len(result.losses) == 4
    assert all(np.isfinite(result.losses))
    assert result.losses[-1] < 0.8 * result.losses[0]
    assert (np.diff(result.losses) < 0).all()
    assert result.resumed_from_epoch == 0
    assert result.seconds > 0


def test_pretraining_twice_with_one_seed_gives_identical_weights(x500, straight_run):
    weights, result = straight_run
    seed_everything(0)
    autoencoder = build_autoencoder(784, TINY)
    again = pretrain_autoencoder(autoencoder, x500, _pretrain_config(4, checkpoint_every=0),
                                 seed=0)
    assert again.losses == pytest.approx(result.losses, abs=1e-7)
    for a, b in zip(weights, autoencoder.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_resuming_from_a_checkpoint_matches_an_uninterrupted_run(x500, straight_run, tmp_path):
    weights, straight = straight_run
    checkpoint_dir = tmp_path / "ckpt"

    seed_everything(0)
    first = pretrain_autoencoder(build_autoencoder(784, TINY), x500, _pretrain_config(2),
                                 seed=0, checkpoint_dir=checkpoint_dir)
    assert first.resumed_from_epoch == 0
    assert (checkpoint_dir / "state.json").is_file()

    # A fresh process would build a model with other weights; the checkpoint must override them.
    seed_everything(99)
    fresh = build_autoencoder(784, TINY)
    assert not np.allclose(fresh.get_weights()[0], weights[0])
    resumed = pretrain_autoencoder(fresh, x500, _pretrain_config(4), seed=0,
                                   checkpoint_dir=checkpoint_dir)

    assert resumed.resumed_from_epoch == 2
    assert len(resumed.losses) == 4
    np.testing.assert_allclose(resumed.losses, straight.losses, atol=1e-5)
    for a, b in zip(weights, fresh.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_cosine_schedule_falls_from_the_learning_rate_to_zero_over_all_steps():
    config = PretrainConfig(epochs=3, batch_size=100, learning_rate=0.01, schedule="cosine")
    schedule = pretrain_learning_rate(config, 3, 450)  # 5 steps an epoch, 15 in all
    rates = [float(schedule(step)) for step in (0, 7.5, 15, 20)]
    assert rates == pytest.approx([0.01, 0.005, 0.0, 0.0], abs=1e-9)
    assert pretrain_learning_rate(PretrainConfig(learning_rate=0.01), 3, 450) == 0.01


def test_an_interrupted_cosine_run_resumes_on_the_same_curve(x500, tmp_path):
    config = dataclasses.replace(_pretrain_config(4), schedule="cosine")

    class Interrupted(Exception):
        pass

    def stop_after_two(epoch, epochs, loss, seconds):
        if epoch == 3:  # the callback comes before epoch 3's checkpoint: 2 epochs are kept
            raise Interrupted

    seed_everything(0)
    straight = build_autoencoder(784, TINY)
    whole = pretrain_autoencoder(straight, x500, config, seed=0)
    seed_everything(0)
    with pytest.raises(Interrupted):
        pretrain_autoencoder(build_autoencoder(784, TINY), x500, config, seed=0,
                             checkpoint_dir=tmp_path, on_epoch=stop_after_two)
    seed_everything(99)
    resumed_model = build_autoencoder(784, TINY)
    resumed = pretrain_autoencoder(resumed_model, x500, config, seed=0, checkpoint_dir=tmp_path)
    assert resumed.resumed_from_epoch == 2
    np.testing.assert_allclose(resumed.losses, whole.losses, atol=1e-5)
    for a, b in zip(straight.get_weights(), resumed_model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # and the schedule mattered: a constant rate ends elsewhere
    seed_everything(0)
    constant = build_autoencoder(784, TINY)
    pretrain_autoencoder(constant, x500, _pretrain_config(4, checkpoint_every=0), seed=0)
    assert not np.allclose(constant.get_weights()[0], straight.get_weights()[0], atol=1e-5)


def test_a_finished_checkpoint_is_not_trained_again(x500, tmp_path):
    seed_everything(0)
    autoencoder = build_autoencoder(784, AutoencoderConfig(hidden_dims=[16], embedding_dim=4))
    x = x500[:100]
    done = pretrain_autoencoder(autoencoder, x, _pretrain_config(1), checkpoint_dir=tmp_path)
    weights = autoencoder.get_weights()
    again = pretrain_autoencoder(autoencoder, x, _pretrain_config(1), checkpoint_dir=tmp_path)
    assert again.resumed_from_epoch == 1
    assert again.losses == done.losses
    for a, b in zip(weights, autoencoder.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_divergence_is_reported_instead_of_returning_nan(x500):
    seed_everything(0)
    autoencoder = build_autoencoder(784, AutoencoderConfig(hidden_dims=[16], embedding_dim=4))
    config = PretrainConfig(epochs=3, batch_size=32, optimizer="sgd", learning_rate=1e6,
                            momentum=0.9, checkpoint_every=0)
    with pytest.raises(FloatingPointError, match=r"pretrain\.learning_rate"):
        pretrain_autoencoder(autoencoder, x500[:128], config)


@pytest.mark.parametrize("rotation", [0.0, 10.0])
def test_augmented_pretraining_learns_and_is_repeatable(mnist_subset, rotation):
    x = mnist_subset.x[:300]
    config = PretrainConfig(epochs=3, optimizer="adam", learning_rate=1e-3, augment_shift=2,
                            augment_rotation=rotation)

    def run():
        seed_everything(0)
        model = build_autoencoder(784, AutoencoderConfig(hidden_dims=[64, 64, 128]))
        losses = pretrain_autoencoder(model, x, config, seed=0, image_shape=(28, 28)).losses
        return losses, model.get_weights()

    (losses_a, weights_a), (losses_b, weights_b) = run(), run()
    assert losses_a[-1] < losses_a[0]
    assert losses_a == losses_b
    for a, b in zip(weights_a, weights_b, strict=True):
        np.testing.assert_array_equal(a, b)


def test_small_data_sets_get_enough_optimizer_steps():
    from dec_lib.model.autoencoder import effective_epochs

    config = PretrainConfig(epochs=40, min_steps=10_000, batch_size=256)
    assert effective_epochs(config, 70_000) == 40  # 274 steps an epoch: 40 epochs suffice
    assert effective_epochs(config, 1_797) == 1_250  # 8 steps an epoch
    assert effective_epochs(PretrainConfig(epochs=40, min_steps=0), 1_797) == 40


def test_pretraining_runs_the_effective_epochs(x500):
    config = PretrainConfig(epochs=1, min_steps=20, batch_size=100, optimizer="adam",
                            learning_rate=3e-3, checkpoint_every=0)
    seen = []
    result = pretrain_autoencoder(build_autoencoder(x500.shape[1], TINY), x500, config,
                                  on_epoch=lambda epoch, epochs, *_: seen.append((epoch, epochs)))
    assert len(result.losses) == 4 and seen[-1] == (4, 4)  # 5 steps an epoch, 20 steps


def test_checkpoints_are_spaced_in_time_when_asked(x500, tmp_path, monkeypatch):
    from dec_lib.model import autoencoder

    saved = []
    monkeypatch.setattr(autoencoder._Checkpoint, "save",
                        lambda self, model, opt, epoch, losses: saved.append(epoch))
    config = PretrainConfig(epochs=6, batch_size=100, optimizer="adam", learning_rate=3e-3,
                            checkpoint_every=1, checkpoint_min_seconds=3600)
    pretrain_autoencoder(build_autoencoder(x500.shape[1], TINY), x500, config,
                         checkpoint_dir=tmp_path)
    assert saved == [6]  # only the last: an hour had not passed since the start


# --- the checkpoint volume of a pod ------------------------------------------------------------

POD_UID = 10001
"""The image's user (docker/Dockerfile): a volume Kubernetes mounts stays root's."""

PRETRAIN_STEP = """
import json, os, sys
from dec_lib import steps
from dec_lib.model import autoencoder, saving  # noqa: F401
from dec_lib.reports import run_report  # noqa: F401
# What the step imports lazily from the standard library, while it can still read it:
import encodings.cp437, resource, mlflow.store.tracking.sqlalchemy_store  # noqa: E401, F401
dataset, out, root, uri, uid = sys.argv[1:6]
if uid:  # started as root: become the image's user (the interpreter's files may be root's only)
    os.setgid(int(uid))
    os.setuid(int(uid))
meta = steps.pretrain(dataset, {"hidden_dims": [16, 16, 32], "embedding_dim": 4},
                      {"epochs": 2, "batch_size": 32, "checkpoint_every": 1,
                       "checkpoint_min_seconds": 0}, 0, out,
                      steps.TrackingContext("", uri, "checkpoints"), checkpoint_root=root)
print(json.dumps(meta))
"""


def _pretrain_step_in_a_pod(request, unwritable: bool):
    """The pretrain step in a process of its own, as the pod's user; its checkpoint root a
    root-owned volume (or, run by another user, a read-only folder of theirs)."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from dec_lib import steps

    work = Path(tempfile.mkdtemp(prefix="dec-pod-"))  # not under pytest's 0700 folder
    request.addfinalizer(lambda: shutil.rmtree(work, ignore_errors=True))
    work.chmod(0o777)
    source = work / "images.npz"
    np.savez(source, x=np.random.default_rng(0).random((64, 8, 8), dtype=np.float32))
    steps.ingest({"dataset": str(source)}, 0, str(work / "dataset"),
                 steps.TrackingContext("", f"sqlite:///{work / 'ingest.db'}", "checkpoints"))
    volume = work / "volume"
    volume.mkdir(mode=0o755)
    as_root = os.geteuid() == 0
    if unwritable and not as_root:
        volume.chmod(0o555)
    elif not unwritable and as_root:
        os.chown(volume, POD_UID, POD_UID)
    out, home = work / "out", work / "home"
    for folder in (out, home):
        folder.mkdir(mode=0o777)
        folder.chmod(0o777)
    process = subprocess.run(
        [sys.executable, "-c", PRETRAIN_STEP, str(work / "dataset"), str(out), str(volume),
         f"sqlite:///{home / 'mlflow.db'}", str(POD_UID) if as_root else ""],
        capture_output=True, text=True, timeout=300, cwd=home,
        env={**os.environ, "HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3",
             "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    return process, volume, out


def test_an_unwritable_checkpoint_volume_is_one_warning_and_training_goes_on(request):
    process, volume, out = _pretrain_step_in_a_pod(request, unwritable=True)
    assert process.returncode == 0, process.stderr[-3000:]
    warnings = [line for line in process.stderr.splitlines() if "not writable" in line]
    assert len(warnings) == 1
    assert str(volume) in warnings[0] and "without checkpoints" in warnings[0]
    assert (out / "autoencoder.keras").is_file()
    assert json.loads(process.stdout.splitlines()[-1])["epochs"] >= 2
    assert not any(volume.iterdir())


def test_a_writable_checkpoint_volume_gets_the_checkpoints(request):
    process, volume, out = _pretrain_step_in_a_pod(request, unwritable=False)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "not writable" not in process.stderr
    (checkpoint,) = volume.iterdir()
    assert checkpoint.name.startswith("pretrain-")
    state = json.loads((checkpoint / "state.json").read_text())
    assert state["epoch"] == json.loads(process.stdout.splitlines()[-1])["epochs"]
    assert (out / "autoencoder.keras").is_file()


def test_the_optimizers_built_are_exactly_those_the_setting_allows():
    from dec_lib.config import OPTIMIZERS as ALLOWED
    from dec_lib.model.autoencoder import OPTIMIZERS

    assert set(OPTIMIZERS) == set(ALLOWED)
