"""Mixed bfloat16 training: same results within noise, float32 artifacts, and honest fallbacks."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from dec_lib.config import AutoencoderConfig, DECConfig, PretrainConfig, RunConfig
from dec_lib.errors import ConfigError
from dec_lib.model import precision
from dec_lib.model.autoencoder import build_autoencoder, encoder_of, pretrain_autoencoder
from dec_lib.model.dec_model import build_dec_model
from dec_lib.model.saving import load_model, save_model
from dec_lib.model.self_training import train_dec
from dec_lib.runtime.seeding import seed_everything

TINY = AutoencoderConfig(hidden_dims=[64, 64, 128], embedding_dim=10)


def _policies(model: keras.Model) -> set[str]:
    return {layer.dtype_policy.name for layer in model.layers
            if isinstance(layer, keras.layers.Dense)}


def test_with_precision_computes_in_bfloat16_and_keeps_float32_weights():
    model = build_autoencoder(30, TINY)
    mixed = precision.with_precision(model, "bfloat16")
    assert mixed is not model
    assert _policies(mixed) == {"mixed_bfloat16"}
    assert {w.dtype for w in mixed.weights} == {"float32"}
    for a, b in zip(model.get_weights(), mixed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).random((8, 30), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(mixed(x), dtype=np.float32), model(x), atol=0.05)


def test_with_precision_returns_the_model_itself_when_nothing_changes():
    model = build_autoencoder(30, TINY)
    assert precision.with_precision(model, "float32") is model
    mixed = precision.with_precision(model, "bfloat16")
    assert precision.with_precision(mixed, "bfloat16") is mixed


def test_the_clustering_layer_stays_float32():
    model = build_dec_model(encoder_of(build_autoencoder(30, TINY)),
                            np.zeros((3, 10), np.float32), alpha=1.0)
    mixed = precision.with_precision(model, "bfloat16")
    assert mixed.get_layer("clustering").dtype_policy.name == "float32"
    q = mixed(np.random.default_rng(0).random((5, 30), dtype=np.float32))
    assert q.dtype == "float32"
    np.testing.assert_allclose(np.sum(q, axis=1), 1.0, rtol=1e-6)


def test_auto_follows_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(precision, "_gpus", lambda: ())
    for flags, expected in ((True, "bfloat16"), (False, "float32")):
        precision.resolve_precision.cache_clear()
        monkeypatch.setattr(precision, "_cpu_has_bf16", lambda flags=flags: flags)
        assert precision.resolve_precision("auto") == expected
    precision.resolve_precision.cache_clear()
    assert precision.resolve_precision("float32") == "float32"
    with pytest.raises(ValueError, match=r"precision must be one of"):
        precision.resolve_precision("float16")


@pytest.mark.parametrize("cap, kept", [("AVX2", False), ("avx512_core", False),
                                       ("AVX512_CORE_BF16", True), ("AVX512_CORE_AMX", True),
                                       ("", True)])
def test_a_onednn_cap_below_bfloat16_means_no_bfloat16(monkeypatch, cap, kept):
    # Under a cap below AVX-512 BF16, TensorFlow aborts on the first bfloat16 product.
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    has_bf16 = "avx512_bf16" in Path("/proc/cpuinfo").read_text()
    assert precision._cpu_has_bf16() == (kept and has_bf16)


def test_unknown_precision_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"dec\.precision"):
        RunConfig().with_overrides(["dec.precision=fp8"])


@pytest.fixture(scope="module")
def x300():
    return np.random.default_rng(1).random((300, 30), dtype=np.float32)


def _pretrained(x, precision_name):
    seed_everything(0)
    model = build_autoencoder(x.shape[1], TINY)
    config = PretrainConfig(epochs=8, batch_size=50, optimizer="adam", learning_rate=3e-3,
                            checkpoint_every=0, precision=precision_name)
    return model, pretrain_autoencoder(model, x, config, seed=0).losses


def test_bfloat16_pretraining_reaches_the_float32_loss_and_returns_float32_weights(x300):
    _, float_losses = _pretrained(x300, "float32")
    model, mixed_losses = _pretrained(x300, "bfloat16")
    assert mixed_losses[-1] < 0.5 * mixed_losses[0]
    assert mixed_losses[-1] == pytest.approx(float_losses[-1], rel=0.05)
    assert _policies(model) == {"float32"}  # the caller's model, trained in place


def test_bfloat16_dec_trains_the_callers_model_which_saves_as_float32(x300, tmp_path):
    autoencoder, _ = _pretrained(x300, "float32")
    centres = x300[:3] @ np.zeros((30, 10), np.float32) + np.eye(3, 10, dtype=np.float32)
    model = build_dec_model(encoder_of(autoencoder), centres, alpha=1.0)
    before = [w.copy() for w in model.get_weights()]
    result = train_dec(model, x300, DECConfig(n_clusters=3, maxiter=20, update_interval=10,
                                              tol=0.0, batch_size=50, precision="bfloat16"))
    assert result.iterations == 20
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(),
                                                        strict=True))
    loaded = load_model(save_model(model, tmp_path / "dec.keras"))
    assert _policies(loaded) == {"float32"}
