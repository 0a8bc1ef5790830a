"""Benchmark: does a different pretraining, or network, give a more separable embedding?

Pretrains an autoencoder with Keras ``Model.fit``, the same loop for every variant so that they
compare side by side, then redoes the initialisation (the preset's UMAP + Gaussian mixture, via
``init_centres``) with several seeds. The variants change one thing each:

- ``plain``: the library's network as it is (the DEC recipe's scaled-uniform kernels), mean
  squared error, Adam at 1e-3, batches of 256;
- ``glorot``: its kernels redrawn from Glorot's uniform distribution, Keras's default and the
  initialiser N2D's autoencoder trains from;
- ``denoise-0.2``: 20% of each input's pixels set to zero and the clean image as the target,
  the masking noise of DEC's stacked denoising autoencoder (Xie et al. 2016), trained end to end;
- ``conv``: not the product's network but the convolutional autoencoder of DCEC and ConvDEC-DA
  (Guo et al. 2017, 2018): 32, 64 and 128 filters of 5, 5 and 3 pixels at stride 2, a 10-d
  dense embedding and the mirror image, for 28 x 28 images and others it mirrors exactly;
- ``contrastive-0.05``: the library's network and reconstruction loss, plus 0.05 x NT-Xent
  (SimCLR's loss, Chen et al. 2020, temperature 0.5) pulling together the normalised embeddings
  of two copies of each image shifted by up to 3 pixels, and pushing apart those of the other
  images in the batch: another objective for the same network;
- ``contrastive-1``: SimCLR's recipe at full weight beside the reconstruction: NT-Xent weighted
  1, on a projection head (64 then 32 units) over the embedding, between copies shifted by up to
  3 pixels and rotated by up to 10 degrees;
- ``contrastive-1-flip``: the same, and each copy mirrored left to right at random. A mirrored
  garment is the same garment, a mirrored digit is not: an invariance only a user who knows the
  data can assert, so never a default.

Records ACC, NMI, the largest and smallest cluster and the embedding's 10-nearest-neighbour
label agreement. Labels only score; nothing here feeds back into training.

    .venv/bin/python bench/pretraining_variants.py --dataset DIR --seed 0 --epochs 40 \\
        --variants plain glorot denoise-0.2 contrastive-0.05

Appends one record per variant and initialisation seed to
``bench/results/pretraining_variants.json``.
"""

import argparse
import json
import time
from dataclasses import dataclass

from init_structure import neighbour_agreement, partition_scores
from records import append_record

MASKED_FRACTION = {"plain": 0.0, "glorot": 0.0, "denoise-0.2": 0.2, "conv": 0.0}
"""Fraction of input pixels each reconstruction-only variant zeroes in training."""


def conv_autoencoder(image_shape: tuple[int, int], embedding_dim: int):
    """Flattened images in and out, through DCEC's convolutional encoder and its mirror."""
    import keras
    from keras import layers

    from dec_lib.model.autoencoder import EMBEDDING_LAYER

    if image_shape is None or len(image_shape) != 2 or min(image_shape) < 16:
        raise ValueError(f"--variants conv needs 2-D images of 16 pixels or more a side, "
                         f"not {image_shape}")
    height, width = image_shape
    images = keras.Input(shape=(height * width,), name="image")
    h = layers.Reshape((height, width, 1))(images)
    h = layers.Conv2D(32, 5, strides=2, padding="same", activation="relu")(h)
    h = layers.Conv2D(64, 5, strides=2, padding="same", activation="relu")(h)
    h = layers.Conv2D(128, 3, strides=2, padding="valid", activation="relu")(h)
    inner = h.shape[1:]
    embedding = layers.Dense(embedding_dim, name=EMBEDDING_LAYER)(layers.Flatten()(h))
    h = layers.Dense(inner[0] * inner[1] * inner[2], activation="relu")(embedding)
    h = layers.Reshape(inner)(h)
    h = layers.Conv2DTranspose(64, 3, strides=2, padding="valid", activation="relu")(h)
    h = layers.Conv2DTranspose(32, 5, strides=2, padding="same", activation="relu")(h)
    h = layers.Conv2DTranspose(1, 5, strides=2, padding="same")(h)
    if tuple(h.shape[1:3]) != (height, width):
        raise ValueError(f"DCEC's convolutional autoencoder maps {height}x{width} images to "
                         f"{h.shape[1]}x{h.shape[2]}; it mirrors 28x28 (MNIST's size) exactly")
    return keras.Model(images, layers.Reshape((height * width,))(h), name="conv_autoencoder")


@dataclass(frozen=True)
class Contrastive:
    """One contrastive variant: NT-Xent's weight beside the reconstruction's mean squared error,
    the copies' largest rotation in degrees, whether the loss is taken on a projection head, and
    whether the copies are mirrored left to right at random."""

    weight: float
    degrees: float = 0.0
    head: bool = False
    flip: bool = False


CONTRASTIVE = {"contrastive-0.05": Contrastive(0.05),
               "contrastive-1": Contrastive(1.0, degrees=10.0, head=True),
               "contrastive-1-flip": Contrastive(1.0, degrees=10.0, head=True, flip=True)}
"""The contrastive variants, by name."""
VARIANTS = [*MASKED_FRACTION, *CONTRASTIVE]
"""Every variant, in the order they run by default."""
PROJECTION_UNITS = (64, 32)
"""The projection head's layers (SimCLR: the loss on a head, the representation before it)."""
TEMPERATURE = 0.5
"""NT-Xent's temperature, the value SimCLR (Chen et al. 2020) trained CIFAR-10 with."""
CONTRASTIVE_SHIFT = 3
"""Largest shift of each copy, in pixels; capped at 1/8 of the smaller side like the library's."""


def contrastive_trainer(autoencoder, image_shape, settings: Contrastive, seed: int):
    """A model whose ``fit`` minimises the reconstruction error of the clean images plus
    ``settings.weight`` x NT-Xent (Chen et al. 2020) between the L2-normalised embeddings (or
    their projections) of two randomly shifted copies of each image: the same network, another
    objective."""
    import keras
    import tensorflow as tf

    from dec_lib.model.augmentation import augmentation
    from dec_lib.model.autoencoder import encoder_of

    encoder = encoder_of(autoencoder)
    shifted = augmentation(CONTRASTIVE_SHIFT, settings.degrees, image_shape, "pretrain")
    head = keras.Sequential([keras.layers.Dense(PROJECTION_UNITS[0], activation="relu"),
                             keras.layers.Dense(PROJECTION_UNITS[1])]) if settings.head else None
    if head is not None:  # built here, so that the optimiser sees its weights from the start
        head.build((None, encoder.output.shape[-1]))

    def augment(x, draw):
        x = shifted(x, draw)
        if not settings.flip:
            return x
        height, width = image_shape
        images = tf.reshape(x, (-1, height, width))
        mirrored = tf.reshape(tf.reverse(images, axis=[2]), (-1, height * width))
        coin = tf.random.stateless_uniform((tf.shape(x)[0], 1), draw + 7_919) < 0.5
        return tf.where(coin, mirrored, x)

    def project(x):
        z = encoder(x, training=True)
        return head(z, training=True) if head is not None else z

    def nt_xent(z1, z2):
        z = tf.math.l2_normalize(tf.concat([z1, z2], 0), axis=1)
        n = tf.shape(z1)[0]
        logits = tf.matmul(z, z, transpose_b=True) / TEMPERATURE
        logits -= 1e9 * tf.eye(2 * n)
        positives = tf.concat([tf.range(n, 2 * n), tf.range(0, n)], 0)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(positives, logits))

    class Trainer(keras.Model):
        def __init__(self):
            super().__init__()
            self.autoencoder = autoencoder
            self.head = head

        def call(self, x):
            return self.autoencoder(x)

        def train_step(self, data):
            x = data[0] if isinstance(data, tuple) else data
            step = tf.cast(self.optimizer.iterations, tf.int32)
            v1 = augment(x, tf.stack([tf.constant(seed, tf.int32), 2 * step]))
            v2 = augment(x, tf.stack([tf.constant(seed, tf.int32), 2 * step + 1]))
            with tf.GradientTape() as tape:
                mse = tf.reduce_mean(tf.square(self.autoencoder(x, training=True) - x))
                contrast = nt_xent(project(v1), project(v2))
                loss = mse + settings.weight * contrast
            variables = self.trainable_variables  # the autoencoder's and the head's
            gradients = tape.gradient(loss, variables)
            self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
            return {"loss": mse, "nt_xent": contrast}

    return Trainer()


def build(variant: str, input_dim: int, config, seed: int, image_shape=None):
    """The autoencoder and the model that trains it (input masking in front, for denoising)."""
    import keras

    from dec_lib.model.autoencoder import build_autoencoder

    keras.utils.set_random_seed(seed)
    if variant == "conv":
        return (conv_autoencoder(image_shape, config.embedding_dim),) * 2
    autoencoder = build_autoencoder(input_dim, config)
    if variant == "glorot":
        for i, layer in enumerate(layer for layer in autoencoder.layers if layer.weights):
            layer.kernel.assign(keras.initializers.GlorotUniform(seed=seed * 100 + i)(
                layer.kernel.shape))
    if variant in CONTRASTIVE:
        return autoencoder, contrastive_trainer(autoencoder, image_shape, CONTRASTIVE[variant],
                                                seed)
    rate = MASKED_FRACTION[variant]
    if not rate:
        return autoencoder, autoencoder
    images = keras.Input(shape=(input_dim,))
    # Dropout rescales what it keeps by 1 / (1 - rate); undoing that leaves pure masking.
    masked = keras.layers.Dropout(rate, seed=seed)(images) * (1.0 - rate)
    return autoencoder, keras.Model(images, autoencoder(masked))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="data.dataset: a name, path or URI")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--init-seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()

    import keras
    import numpy as np

    from dec_lib.config import preset
    from dec_lib.data.datasets import load_dataset
    from dec_lib.model.augmentation import augmentation
    from dec_lib.model.autoencoder import embed, encoder_of
    from dec_lib.model.initialisation import init_centres

    config = preset(args.preset)
    dataset = load_dataset(args.dataset)
    x = np.asarray(dataset.x, dtype=np.float32)
    n_clusters = config.dec.n_clusters
    if "conv" in args.variants:  # refused before any variant trains, not after
        try:
            conv_autoencoder(dataset.image_shape, config.autoencoder.embedding_dim)
        except ValueError as error:
            parser.error(str(error))
    contrastive = [v for v in args.variants if v in CONTRASTIVE]
    if contrastive and augmentation(CONTRASTIVE_SHIFT, 0.0, dataset.image_shape,
                                    "pretrain") is None:
        parser.error(f"--variants {contrastive[0]} needs 2-D images of 8 pixels or more a side "
                     f"to shift, not {dataset.image_shape}")
    for variant in args.variants:
        autoencoder, trained = build(variant, x.shape[1], config.autoencoder, args.seed,
                                     dataset.image_shape)
        trained.compile(optimizer=keras.optimizers.Adam(config.pretrain.learning_rate),
                        loss="mse", jit_compile=False)
        started = time.perf_counter()
        history = trained.fit(x, x, batch_size=config.pretrain.batch_size, epochs=args.epochs,
                              shuffle=True, verbose=2)
        pretrain_seconds = time.perf_counter() - started
        clean_mse = float(np.mean(np.square(
            autoencoder.predict(x, batch_size=8192, verbose=0) - x)))
        z = np.asarray(embed(encoder_of(autoencoder), x), dtype=np.float64)
        agreement = neighbour_agreement(z, dataset.y)
        for init_seed in args.init_seeds:
            init = init_centres(z, n_clusters, config.init, seed=init_seed)
            record = append_record(
                "pretraining_variants", preset=args.preset, dataset=args.dataset,
                seed=args.seed, epochs=args.epochs, variant=variant, init_seed=init_seed,
                train_loss=round(history.history["loss"][-1], 6), clean_mse=round(clean_mse, 6),
                **partition_scores(dataset.y, init.labels, n_clusters),
                neighbour_agreement=round(agreement, 4),
                pretrain_seconds=round(pretrain_seconds))
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
