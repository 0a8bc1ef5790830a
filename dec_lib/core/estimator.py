"""``DEC``: the whole algorithm behind scikit-learn's estimator interface.

The pipeline runs the phases as separate steps; this class chains the same functions so that a
notebook user gets ``fit``/``predict`` on an array and nothing else to learn.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from dec_lib.config import RunConfig, preset
from dec_lib.data.validation import check_images, check_n_clusters
from dec_lib.errors import NotFittedError
from dec_lib.model.autoencoder import build_autoencoder, embed, encoder_of, pretrain_autoencoder
from dec_lib.model.saving import load_model, save_model
from dec_lib.model.training import CLUSTERING_LAYER, build_dec_model, init_centres, train_dec
from dec_lib.runtime.seeding import seed_everything


class DEC:
    """Deep Embedded Clustering.

    Parameters
    ----------
    config : RunConfig, optional
        Hyper-parameters; ``preset("default")`` when omitted. ``config.data`` is ignored: the
        data are what ``fit`` receives.
    """

    def __init__(self, config: RunConfig | None = None):
        self.config = config

    def fit(self, x, y=None) -> DEC:
        """Pretrain the autoencoder, initialise the clusters on its embedding, then self-train.

        ``y`` is accepted for scikit-learn compatibility and ignored: DEC is unsupervised.
        """
        config = (self.config or preset("default")).validate()
        raw_shape = np.shape(x)
        image_shape = tuple(raw_shape[1:3]) if len(raw_shape) >= 3 else None
        x = check_images(x, source="x")
        check_n_clusters(config.dec.n_clusters, len(x))
        seed_everything(config.seed)
        autoencoder = build_autoencoder(x.shape[1], config.autoencoder)
        self.pretrain_ = pretrain_autoencoder(autoencoder, x, config.pretrain, seed=config.seed,
                                              image_shape=image_shape)
        encoder = encoder_of(autoencoder)
        init = init_centres(embed(encoder, x), config.dec.n_clusters, config.init,
                            seed=config.seed)
        self.model_ = build_dec_model(encoder, init.centres, config.dec.alpha)
        result = train_dec(self.model_, x, config.dec, initial_labels=init.labels)
        self.labels_ = result.labels
        self.n_iter_ = result.iterations
        self.history_ = result.history
        return self

    def _check_fitted(self) -> keras.Model:
        model = getattr(self, "model_", None)
        if model is None:
            raise NotFittedError("this DEC instance is not fitted yet: call fit(x) or DEC.load()")
        return model

    @property
    def cluster_centers_(self) -> np.ndarray:
        return self._check_fitted().get_layer(CLUSTERING_LAYER).get_weights()[0]

    def predict_proba(self, x) -> np.ndarray:
        """Soft assignments q (rows sum to one)."""
        model = self._check_fitted()
        return embed(model, check_images(x, source="x"))

    def predict(self, x) -> np.ndarray:
        return self.predict_proba(x).argmax(axis=1)

    def fit_predict(self, x, y=None) -> np.ndarray:
        return self.fit(x).labels_

    def transform(self, x) -> np.ndarray:
        """The learned embedding."""
        model = self._check_fitted()
        encoder = keras.Model(model.input, model.get_layer(CLUSTERING_LAYER).input)
        return embed(encoder, check_images(x, source="x"))

    def save(self, path: str | os.PathLike) -> None:
        save_model(self._check_fitted(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> DEC:
        estimator = cls()
        estimator.model_ = load_model(path)
        return estimator
