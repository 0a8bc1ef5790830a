"""The fully connected autoencoder and its pretraining.

Pretraining uses its own compiled step rather than ``Model.fit``: one graph-compiled function
per batch (XLA on GPUs), bfloat16 where the hardware has it (``dec_lib.model.precision``), no
callback machinery, and a resumable checkpoint every few epochs so that a pod preempted mid-run
picks up where it stopped. With more than one GPU visible it trains data-parallel under
``tf.distribute.MirroredStrategy``: each replica takes a share of every batch and the gradients
are summed across replicas, so a batch means the same thing on one GPU or eight.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from dec_lib.config import AutoencoderConfig, PretrainConfig
from dec_lib.model.augmentation import augmentation
from dec_lib.model.clustering import ClusteringLayer
from dec_lib.model.forward import predict_batched
from dec_lib.model.optimizers import FusedAdam, FusedSGD
from dec_lib.model.precision import use_xla, with_precision
from dec_lib.runtime.files import replaced

log = logging.getLogger(__name__)

EMBEDDING_LAYER = "embedding"


def build_autoencoder(input_dim: int, config: AutoencoderConfig) -> keras.Model:
    """d-500-500-2000-10 and its mirror: ReLU inside, linear embedding and reconstruction.

    Parameters
    ----------
    input_dim : int
        Pixels per image.
    config : AutoencoderConfig
        Hidden layer sizes and the embedding's dimension.

    Returns
    -------
    keras.Model
        Images in, reconstructions out; the embedding is layer ``EMBEDDING_LAYER``.
    """
    init = keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in",
                                              distribution="uniform")
    inputs = keras.Input(shape=(input_dim,), name="image")
    h = inputs
    for i, units in enumerate(config.hidden_dims):
        h = keras.layers.Dense(units, activation="relu", kernel_initializer=init,
                               name=f"encoder_{i}")(h)
    embedding = keras.layers.Dense(config.embedding_dim, kernel_initializer=init,
                                   name=EMBEDDING_LAYER)(h)
    h = embedding
    for i, units in enumerate(reversed(config.hidden_dims)):
        h = keras.layers.Dense(units, activation="relu", kernel_initializer=init,
                               name=f"decoder_{i}")(h)
    reconstruction = keras.layers.Dense(input_dim, kernel_initializer=init,
                                        name="reconstruction")(h)
    return keras.Model(inputs, reconstruction, name="autoencoder")


def encoder_of(autoencoder: keras.Model) -> keras.Model:
    """The encoder half, sharing weights with the autoencoder.

    Parameters
    ----------
    autoencoder : keras.Model
        An autoencoder from ``build_autoencoder`` (or any model with its embedding layer).

    Returns
    -------
    keras.Model
        Images in, the embedding out.
    """
    return keras.Model(autoencoder.input, autoencoder.get_layer(EMBEDDING_LAYER).output,
                       name="encoder")


LearningRate = float | keras.optimizers.schedules.LearningRateSchedule
"""A fixed step size, or a schedule of it over the optimizer's steps."""


def make_optimizer(name: str, learning_rate: LearningRate,
                   momentum: float) -> keras.optimizers.Optimizer:
    """The pretraining optimizer ``pretrain.optimizer`` names.

    Parameters
    ----------
    name : str
        ``adam``, or ``sgd`` (with momentum, as published).
    learning_rate : float or keras.optimizers.schedules.LearningRateSchedule
        Step size, or its schedule.
    momentum : float
        SGD's momentum; Adam ignores it.

    Returns
    -------
    keras.optimizers.Optimizer
    """
    return OPTIMIZERS[name](learning_rate, momentum)


OPTIMIZERS: dict[str, Callable[[LearningRate, float], keras.optimizers.Optimizer]] = {
    "sgd": lambda learning_rate, momentum: FusedSGD(learning_rate=learning_rate,
                                                    momentum=momentum),
    "adam": lambda learning_rate, _: FusedAdam(learning_rate=learning_rate),
}
"""Optimizer builders by name; ``tests/test_autoencoder.py`` checks that the names are exactly
those ``pretrain.optimizer`` allows (``dec_lib.config.OPTIMIZERS``). Keras's arithmetic, one
kernel per weight (``dec_lib.model.optimizers``)."""


def embed(encoder: keras.Model, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """The embedding of every row of ``x``, in large compiled batches.

    Parameters
    ----------
    encoder : keras.Model
        An encoder (``encoder_of`` an autoencoder, or ``dec_encoder`` of a DEC model), whose
        output is the embedding.
    x : numpy.ndarray
        Images, N x pixels.
    batch_size : int, default 8192
        Rows per compiled call.

    Returns
    -------
    numpy.ndarray
        N x embedding dimensions.

    Raises
    ------
    TypeError
        ``encoder`` is a DEC model: its output is soft assignments, not an embedding.
    """
    if any(isinstance(layer, ClusteringLayer) for layer in encoder.layers):
        raise TypeError("embed() takes an encoder, and this is a DEC model: its soft "
                        "assignments are dec_model.soft_assignments(model, x), its embedding "
                        "embed(dec_model.dec_encoder(model), x)")
    return predict_batched(encoder, x, batch_size)


def distribution_strategy() -> tf.distribute.Strategy | None:
    """``MirroredStrategy`` over every GPU when more than one is visible, else None (one device)."""
    if len(tf.config.list_physical_devices("GPU")) > 1:
        strategy = tf.distribute.MirroredStrategy()
        log.info("pretraining data-parallel on %d GPUs (MirroredStrategy)",
                 strategy.num_replicas_in_sync)
        return strategy
    return None


def _replica_copy(model: keras.Model, precision: str, strategy: tf.distribute.Strategy
                  ) -> keras.Model:
    """A copy of ``model`` in ``precision`` whose variables ``strategy`` mirrors on its devices.

    The caller built ``model`` outside any strategy, and a variable belongs to the strategy it was
    created under; so the copy is made here, and its weights go back to ``model`` at the end.
    """
    with strategy.scope():
        copy = with_precision(model, precision)
        if copy is model:
            copy = keras.models.clone_model(model)
            copy.set_weights(model.get_weights())
    return copy


def effective_epochs(config: PretrainConfig, n_samples: int) -> int:
    """``config.epochs``, or more on a small data set, so that training takes at least
    ``config.min_steps`` optimizer steps: what an autoencoder learns depends on its updates,
    and 40 epochs of 1,800 images are only 280 of them.

    Parameters
    ----------
    config : PretrainConfig
        ``epochs``, ``min_steps`` and ``batch_size``.
    n_samples : int
        Images trained on.

    Returns
    -------
    int
        Epochs to train.
    """
    if not config.min_steps or n_samples == 0:
        return config.epochs
    return max(config.epochs, -(-config.min_steps // _steps_per_epoch(config, n_samples)))


def _steps_per_epoch(config: PretrainConfig, n_samples: int) -> int:
    """Optimizer steps in one pass over ``n_samples`` images; the last batch may be short."""
    return -(-n_samples // config.batch_size)


def pretrain_learning_rate(config: PretrainConfig, epochs: int, n_samples: int) -> LearningRate:
    """``config.learning_rate``, or a schedule over all ``epochs`` that ``config.schedule`` names.

    The schedule counts the optimizer's steps, which a checkpoint keeps, so a resumed run
    continues the curve where it stopped.

    Parameters
    ----------
    config : PretrainConfig
        ``learning_rate``, ``schedule`` and ``batch_size``.
    epochs : int
        Epochs the whole pretraining runs (``effective_epochs``).
    n_samples : int
        Images per epoch.

    Returns
    -------
    float or keras.optimizers.schedules.LearningRateSchedule
    """
    if config.schedule == "constant":
        return config.learning_rate
    steps = epochs * _steps_per_epoch(config, n_samples)
    return keras.optimizers.schedules.CosineDecay(config.learning_rate, max(steps, 1))


@dataclass
class PretrainResult:
    """How pretraining went: ``pretrain_autoencoder`` trains the model it is given in place."""

    losses: list[float] = field(default_factory=list)
    """Mean reconstruction MSE per epoch, resumed epochs included."""
    resumed_from_epoch: int = 0
    seconds: float = 0.0


class _Checkpoint:
    """Weights, optimizer state and loss history, written atomically so a kill never corrupts it."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.weights = self.directory / "autoencoder.weights.h5"
        self.optimizer = self.directory / "optimizer.npz"
        self.state = self.directory / "state.json"

    @classmethod
    def writable(cls, directory: str | os.PathLike) -> _Checkpoint | None:
        """A checkpoint in ``directory`` if this process can write there, else None and one
        warning.

        A volume mounted by Kubernetes belongs to root unless the pod's ``fsGroup`` says
        otherwise, which kfp-kubernetes cannot set, and the image runs as uid 10001: failing
        would fail every retry the same way, while training without checkpoints only loses
        the resumption.
        """
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe = directory / f".write-test-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as error:
            uid = os.getuid() if hasattr(os, "getuid") else "?"
            log.warning("checkpoint folder %s is not writable by uid %s (%s): pretraining goes "
                        "on without checkpoints, so a retried pod starts over; make the volume "
                        "writable (README, 'Checkpoint volume')", directory, uid,
                        error.strerror or error)
            return None
        return cls(directory)

    def save(self, model: keras.Model, optimizer: keras.optimizers.Optimizer,
             epoch: int, losses: list[float]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # All three are written before any replaces its file, and state.json is replaced last
        # (the blocks end innermost first): its presence is what marks a checkpoint complete.
        with (replaced(self.state) as state_tmp, replaced(self.optimizer) as optimizer_tmp,
              replaced(self.weights) as weights_tmp):
            model.save_weights(weights_tmp)
            np.savez(optimizer_tmp, *[np.asarray(v.numpy()) for v in optimizer.variables])
            state_tmp.write_text(json.dumps({"epoch": epoch, "losses": losses}))

    def restore(self, model: keras.Model, optimizer: keras.optimizers.Optimizer
                ) -> tuple[int, list[float]]:
        if not self.state.exists():
            return 0, []
        state = json.loads(self.state.read_text())
        model.load_weights(self.weights)
        optimizer.build(model.trainable_variables)
        with np.load(self.optimizer, allow_pickle=False) as saved:
            values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        if len(values) != len(optimizer.variables):
            log.warning("checkpoint optimizer state does not match; restarting the optimizer")
        else:
            for variable, value in zip(optimizer.variables, values, strict=True):
                variable.assign(value)
        return int(state["epoch"]), [float(v) for v in state["losses"]]


EpochCallback = Callable[[int, int, float, float], None]
"""on_epoch(epoch, epochs, loss, seconds_per_epoch)"""


def pretrain_autoencoder(
    autoencoder: keras.Model,
    x: np.ndarray,
    config: PretrainConfig,
    *,
    seed: int = 0,
    image_shape: tuple[int, ...] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    on_epoch: EpochCallback | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> PretrainResult:
    """Minimise reconstruction MSE; resumes from ``checkpoint_dir`` when one is there.

    A ``checkpoint_dir`` this process cannot write is one warning, and training without
    checkpoints.

    ``strategy`` (default: ``distribution_strategy()``, mirrored over several GPUs, else none)
    trains a copy of ``autoencoder`` on its replicas, whose weights come back at the end.

    With ``config.augment_shift`` or ``config.augment_rotation`` and 2-D images, every batch is
    randomly shifted and rotated, and the autoencoder reconstructs the moved images (as in
    DEC-DA, Guo et al. 2018), which teaches an embedding that does not hinge on exact pixel
    positions.

    Parameters
    ----------
    autoencoder : keras.Model
        Trained in place.
    x : numpy.ndarray
        Images, N x pixels.
    config : PretrainConfig
        Optimizer, epochs, precision, augmentation and checkpoint settings.
    seed : int, default 0
        Seeds the batch order and the augmentation (the weights are seeded by the caller).
    image_shape : tuple of int, optional
        The images' 2-D shape, which the augmentation needs.
    checkpoint_dir : str or os.PathLike, optional
        Where resumable checkpoints go.
    on_epoch : callable, optional
        ``on_epoch(epoch, epochs, loss, seconds_per_epoch)`` after every epoch.
    strategy : tf.distribute.Strategy, optional
        Overrides ``distribution_strategy()``.

    Returns
    -------
    PretrainResult

    Raises
    ------
    FloatingPointError
        The loss diverged.
    """
    epochs = effective_epochs(config, len(x))
    if strategy is None:
        strategy = distribution_strategy()
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        # Optimizer state, and the model's variables, must be created under the strategy.
        optimizer = make_optimizer(config.optimizer,
                                   pretrain_learning_rate(config, epochs, len(x)),
                                   config.momentum)
        # Trains a copy computing in the configured precision; its weights come back at the end.
        compute = (_replica_copy(autoencoder, config.precision, strategy) if strategy is not None
                   else with_precision(autoencoder, config.precision))
        checkpoint = _Checkpoint.writable(checkpoint_dir) if checkpoint_dir else None
        start_epoch, losses = (0, [])
        if checkpoint is not None:
            start_epoch, losses = checkpoint.restore(compute, optimizer)
        if strategy is not None and not optimizer.built:
            # Built now, mirrored: built lazily inside the compiled epoch it would not be.
            optimizer.build(compute.trainable_variables)
    if checkpoint is not None:
        if start_epoch >= epochs:
            log.info("pretraining already complete in checkpoint %s (%d epochs)",
                     checkpoint_dir, start_epoch)
        elif start_epoch:
            log.info("resuming pretraining from checkpoint %s at epoch %d of %d",
                     checkpoint_dir, start_epoch + 1, epochs)
    result = PretrainResult(losses=losses, resumed_from_epoch=start_epoch)
    variables = compute.trainable_variables
    augment = augmentation(config.augment_shift, config.augment_rotation, image_shape,
                           "pretrain")

    if strategy is None:
        @tf.function(jit_compile=use_xla(), reduce_retracing=True)
        def train_step(batch, step_seed):
            if augment:
                batch = augment(batch, step_seed)
            with tf.GradientTape() as tape:
                reconstruction = tf.cast(compute(batch, training=True), tf.float32)
                loss = tf.reduce_mean(tf.square(batch - reconstruction))
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables,
                                          strict=True))
            return loss
    else:
        # As in Keras, no XLA under tf.distribute: the update is a merge across replicas.
        def replica_step(batch, step_seed):
            context = tf.distribute.get_replica_context()
            replicas = context.num_replicas_in_sync
            replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
            share = batch[replica::replicas]  # every replicas-th row of the batch
            if augment:  # a seed of its own for each replica's share
                share = augment(share, tf.stack([step_seed[0], step_seed[1] * replicas + replica]))
            with tf.GradientTape() as tape:
                reconstruction = tf.cast(compute(share, training=True), tf.float32)
                # This share's part of the whole batch's mean: the optimizer sums the replicas'
                # gradients, which makes the gradient of that mean.
                loss = tf.reduce_sum(tf.square(share - reconstruction)) / tf.cast(
                    tf.size(batch), tf.float32)
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables,
                                          strict=True))
            return loss

        def train_step(batch, step_seed):
            losses = strategy.run(replica_step, args=(batch, step_seed))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    data = tf.constant(x)
    n, batch_size = len(x), config.batch_size

    @tf.function
    def train_epoch(shuffled, epoch_seed):
        """Every batch of one epoch in one graph call: no Python between two steps."""
        total = tf.constant(0.0)
        for begin in tf.range(0, n, batch_size):
            batch = shuffled[begin:begin + batch_size]
            loss = train_step(batch, tf.stack([epoch_seed, begin]))
            total += loss * tf.cast(tf.shape(batch)[0], tf.float32)
        return total / n

    started = saved_at = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        epoch_started = time.perf_counter()
        # The order depends on (seed, epoch) alone, so a resumed run sees the same batches.
        # One gather per epoch, then contiguous slices: cheaper than a gather per batch.
        shuffled = tf.gather(data, np.random.default_rng([seed, epoch]).permutation(n))
        loss = float(train_epoch(shuffled, tf.constant(seed * 100_003 + epoch, tf.int32)))
        if not np.isfinite(loss):
            raise FloatingPointError(
                f"pretraining diverged at epoch {epoch + 1} (loss {loss}); "
                "lower pretrain.learning_rate")
        result.losses.append(loss)
        seconds = time.perf_counter() - epoch_started
        if on_epoch is not None:
            on_epoch(epoch + 1, epochs, loss, seconds)
        last = epoch + 1 == epochs
        due = config.checkpoint_every and (epoch + 1) % config.checkpoint_every == 0 and (
            time.perf_counter() - saved_at >= config.checkpoint_min_seconds)
        if checkpoint is not None and (due or (last and config.checkpoint_every)):
            checkpoint.save(compute, optimizer, epoch + 1, result.losses)
            saved_at = time.perf_counter()
    if compute is not autoencoder:
        autoencoder.set_weights(compute.get_weights())
    result.seconds = time.perf_counter() - started
    return result
