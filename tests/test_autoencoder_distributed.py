"""Pretraining under ``tf.distribute.MirroredStrategy``, on CPU devices standing in for GPUs.

Several replicas need several logical devices, which TensorFlow only creates before it first
runs; so the multi-replica checks run in a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import tensorflow as tf

from dec_lib.config import AutoencoderConfig, PretrainConfig
from dec_lib.model.autoencoder import build_autoencoder, distribution_strategy, pretrain_autoencoder
from dec_lib.runtime.seeding import seed_everything

TINY = AutoencoderConfig(hidden_dims=[32, 32, 64], embedding_dim=5)


def _config(**changes) -> PretrainConfig:
    settings = {"epochs": 2, "batch_size": 64, "optimizer": "sgd", "learning_rate": 0.1,
                "momentum": 0.9, "precision": "float32", **changes}
    return PretrainConfig(**settings)


def _max_difference(a, b) -> float:
    return max(float(np.abs(u - v).max()) for u, v in zip(a.get_weights(), b.get_weights(),
                                                          strict=True))


def test_one_gpu_or_none_trains_without_a_strategy(monkeypatch):
    for gpus in ([], ["/physical_device:GPU:0"]):
        monkeypatch.setattr(tf.config, "list_physical_devices",
                            lambda kind=None, gpus=gpus: gpus if kind == "GPU" else [])
        assert distribution_strategy() is None


def test_a_mirrored_replica_trains_like_one_device_and_hands_the_weights_back(tmp_path):
    x = np.random.default_rng(0).random((300, 20), dtype=np.float32)
    seed_everything(0)
    plain = build_autoencoder(20, TINY)
    seed_everything(0)
    mirrored = build_autoencoder(20, TINY)
    before = mirrored.get_weights()
    plain_result = pretrain_autoencoder(plain, x, _config())
    result = pretrain_autoencoder(mirrored, x, _config(checkpoint_every=1),
                                  strategy=tf.distribute.MirroredStrategy(["/cpu:0"]),
                                  checkpoint_dir=tmp_path / "checkpoint")
    # The model the caller built (outside the strategy) ends with the trained weights.
    assert _max_difference(mirrored, plain) < 1e-5
    assert any(not np.array_equal(b, a) for b, a in zip(before, mirrored.get_weights(),
                                                       strict=True))
    np.testing.assert_allclose(result.losses, plain_result.losses, rtol=1e-5)
    # Its checkpoint resumes, under the strategy, with the optimizer state it saved.
    seed_everything(0)
    resumed = build_autoencoder(20, TINY)
    again = pretrain_autoencoder(resumed, x, _config(epochs=3, checkpoint_every=1),
                                 strategy=tf.distribute.MirroredStrategy(["/cpu:0"]),
                                 checkpoint_dir=tmp_path / "checkpoint")
    assert again.resumed_from_epoch == 2 and len(again.losses) == 3


MULTI_REPLICA = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 3)
    import numpy as np
    from dec_lib.model.autoencoder import build_autoencoder, pretrain_autoencoder
    from dec_lib.config import AutoencoderConfig, PretrainConfig
    from dec_lib.runtime.seeding import seed_everything

    tiny = AutoencoderConfig(hidden_dims=[32, 32, 64], embedding_dim=5)
    x = np.random.default_rng(0).random((301, 20), dtype=np.float32)
    sgd = PretrainConfig(epochs=2, batch_size=64, optimizer="sgd", learning_rate=0.1,
                         momentum=0.9, precision="float32")
    # One strategy per process: TensorFlow's collectives do not mix replica counts.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1", "/cpu:2"])
    out = {"replicas": strategy.num_replicas_in_sync}
    seed_everything(0)
    plain = build_autoencoder(20, tiny)
    out["plain"] = pretrain_autoencoder(plain, x, sgd).losses
    seed_everything(0)
    model = build_autoencoder(20, tiny)
    out["mirrored"] = pretrain_autoencoder(model, x, sgd, strategy=strategy).losses
    out["difference"] = max(float(np.abs(a - b).max()) for a, b in
                            zip(plain.get_weights(), model.get_weights()))
    # Mixed precision and augmentation, with each replica's own shifts, run and learn.
    shifted = PretrainConfig(epochs=3, batch_size=64, optimizer="adam", learning_rate=3e-3,
                             precision="bfloat16", augment_shift=1)
    seed_everything(0)
    model = build_autoencoder(20, tiny)
    out["shifted"] = pretrain_autoencoder(model, x, shifted, image_shape=(4, 5),
                                          strategy=strategy).losses
    out["dtype"] = model.layers[1].dtype_policy.name
    sys.stdout.write("RESULT " + json.dumps(out) + "\\n")
""")


def test_three_replicas_split_each_batch_and_match_one_device():
    # 301 rows in batches of 64: no batch divides evenly among 3 replicas.
    done = subprocess.run([sys.executable, "-c", MULTI_REPLICA], capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    out = json.loads(line.removeprefix("RESULT "))
    assert out["replicas"] == 3
    # Same data, same start: the summed replica gradients are the one-device gradient.
    assert out["difference"] < 1e-5, out
    np.testing.assert_allclose(out["mirrored"], out["plain"], rtol=1e-5)
    assert out["shifted"][-1] < out["shifted"][0]
    assert out["dtype"] == "float32"  # the caller's model stays float32
