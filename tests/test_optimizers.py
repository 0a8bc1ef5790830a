"""The fused optimizers make Keras's updates, in one kernel per weight."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import keras
import numpy as np
import pytest
import tensorflow as tf

from dec_lib.model.autoencoder import make_optimizer
from dec_lib.model.optimizers import FusedAdam, FusedSGD

SHAPES = [(30, 20), (20,), (20, 3)]


def _train(make: Callable[[], keras.optimizers.Optimizer], *, steps: int = 25,
           jit: bool = False, strategy: tf.distribute.Strategy | None = None):
    """Weights and optimizer state after ``steps`` updates with seeded gradients."""
    rng = np.random.default_rng(0)
    with strategy.scope() if strategy else contextlib.nullcontext():
        weights = [keras.Variable(rng.normal(size=s).astype(np.float32)) for s in SHAPES]
        optimizer = make()
        optimizer.build(weights)
    gradients = [[tf.constant(rng.normal(size=s).astype(np.float32)) for s in SHAPES]
                 for _ in range(steps)]

    @tf.function(jit_compile=jit)
    def step(grads):
        optimizer.apply_gradients(zip(grads, weights, strict=True))

    for grads in gradients:
        if strategy:
            strategy.run(step, args=(grads,))
        else:
            step(grads)
    return [w.numpy() for w in weights], [v.numpy() for v in optimizer.variables]


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize(("fused", "keras_own", "tolerance"), [
    (lambda: FusedAdam(learning_rate=1e-2), lambda: keras.optimizers.Adam(learning_rate=1e-2),
     1e-5),  # float32 rounding: one kernel, or several passes
    (lambda: FusedSGD(learning_rate=0.03, momentum=0.9),
     lambda: keras.optimizers.SGD(learning_rate=0.03, momentum=0.9), 0.0),
], ids=["adam", "sgd-momentum"])
def test_fused_updates_are_kerass_updates(fused, keras_own, tolerance, jit):
    ours, ours_state = _train(fused, jit=jit)
    theirs, their_state = _train(keras_own, jit=jit)
    assert len(ours_state) == len(their_state)  # the same variables, so checkpoints carry over
    for a, b in zip(ours + ours_state, theirs + their_state, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=tolerance)
    assert not np.allclose(ours[0], _train(fused, steps=0)[0][0])  # they did move


def test_options_the_kernels_lack_take_kerass_update():
    for fused, keras_own in (
            (lambda: FusedAdam(amsgrad=True), lambda: keras.optimizers.Adam(amsgrad=True)),
            (lambda: FusedSGD(momentum=0.9, nesterov=True),
             lambda: keras.optimizers.SGD(momentum=0.9, nesterov=True)),
            (lambda: FusedSGD(momentum=0.0), lambda: keras.optimizers.SGD(momentum=0.0))):
        for a, b in zip(_train(fused)[0], _train(keras_own)[0], strict=True):
            np.testing.assert_array_equal(a, b)


def test_under_a_strategy_the_replicas_take_kerass_update():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    ours, _ = _train(lambda: FusedAdam(learning_rate=1e-2), strategy=strategy)
    theirs, _ = _train(lambda: keras.optimizers.Adam(learning_rate=1e-2))
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)  # Keras's own passes, not the kernel


def test_training_builds_the_fused_optimizers():
    assert isinstance(make_optimizer("adam", 1e-3, 0.0), FusedAdam)
    assert isinstance(make_optimizer("sgd", 0.01, 0.9), FusedSGD)


@pytest.mark.parametrize(("make", "kernel"), [(FusedAdam, "ResourceApplyAdam"),
                                              (lambda: FusedSGD(momentum=0.9),
                                               "ResourceApplyKerasMomentum")])
def test_each_weight_is_updated_by_one_kernel(make, kernel):
    weights = [keras.Variable(np.ones(s, np.float32)) for s in SHAPES]
    optimizer = make()
    optimizer.build(weights)
    update = tf.function(lambda grads: optimizer.apply_gradients(zip(grads, weights,
                                                                         strict=True)))
    graph = update.get_concrete_function([tf.TensorSpec(s) for s in SHAPES]).graph
    assert [op.type for op in graph.get_operations()].count(kernel) == len(SHAPES)
