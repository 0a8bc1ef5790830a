"""``DEC``: the whole algorithm behind scikit-learn's estimator interface.

``fit`` runs the phases of ``dec_lib.core.phases`` in one process, the same functions that the
pipeline runs as separate steps, so that one seed gives one model through either; a notebook
user gets ``fit``/``predict`` on an array and nothing else to learn.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from dec_lib.config import RunConfig, preset
from dec_lib.core import phases
from dec_lib.core.tracker import NullTracker, Tracker
from dec_lib.data.datasets import infer_image_shape
from dec_lib.data.validation import check_images, check_labels, check_n_clusters
from dec_lib.errors import NotFittedError
from dec_lib.model.autoencoder import embed
from dec_lib.model.dec_model import cluster_centres, cluster_labels, dec_encoder, soft_assignments
from dec_lib.model.saving import load_model, save_model


class DEC:
    """Deep Embedded Clustering.

    Parameters
    ----------
    config : RunConfig, optional
        Hyper-parameters; ``preset("default")`` when omitted. ``config.data`` is ignored: the
        data are what ``fit`` receives.

    Attributes
    ----------
    model_ : keras.Model
        The trained DEC model: encoder and clustering layer.
    labels_ : numpy.ndarray
        The cluster of every training image.
    n_iter_ : int
        Self-training iterations run.
    history_ : list of UpdateRecord
        One record per target update.
    pretrain_ : Pretrained
        The pretraining's losses and epochs.
    """

    def __init__(self, config: RunConfig | None = None):
        self.config = config

    def fit(self, x, y=None, *, tracker: Tracker | None = None) -> DEC:
        """Pretrain the autoencoder, initialise the clusters on its embedding, then self-train.

        Each phase reseeds with ``config.seed``, exactly as the pipeline's steps do, so this
        gives the model the pipeline gives for the same data and configuration.

        Parameters
        ----------
        x : array-like
            Images: N x pixels, N x H x W or N x H x W x 1; uint8 or floats in [0, 1].
        y : array-like, optional
            True labels. DEC is unsupervised: they are never used to train, only reported
            (accuracy in the progress log and to ``tracker``), as the pipeline reports them.
        tracker : Tracker, optional
            Receives the configuration and what the phases measure; nothing is kept when
            omitted.

        Returns
        -------
        DEC
            This estimator, fitted.

        Raises
        ------
        ConfigError
            An invalid configuration, or more clusters than images.
        DataError
            ``x`` (or ``y``) is not a usable set of images (or labels).
        """
        config = (self.config or preset("default")).validate()
        tracker = tracker or NullTracker()
        raw_shape = np.shape(x)
        image_shape = infer_image_shape(raw_shape) if len(raw_shape) >= 2 else None
        x = check_images(x, source="x")
        y = check_labels(y, len(x), source="y")
        check_n_clusters(config.dec.n_clusters, len(x))
        tracker.log_params({k: v for k, v in config.flat().items()
                            if not k.startswith("data.")})
        self.pretrain_ = phases.pretrain(x, config.autoencoder, config.pretrain,
                                         seed=config.seed, image_shape=image_shape,
                                         tracker=tracker)
        initialised = phases.initialise(self.pretrain_.autoencoder, x, config.dec.n_clusters,
                                        config.init, seed=config.seed, y=y, tracker=tracker)
        trained = phases.self_train(self.pretrain_.autoencoder,
                                    initialised.init.centres, initialised.init.labels, x,
                                    config.dec, seed=config.seed, y=y, image_shape=image_shape,
                                    tracker=tracker)
        self.model_ = trained.model
        self.labels_ = trained.result.labels
        self.n_iter_ = trained.result.iterations
        self.history_ = trained.result.history
        return self

    def _check_fitted(self) -> keras.Model:
        model = getattr(self, "model_", None)
        if model is None:
            raise NotFittedError("this DEC instance is not fitted yet: call fit(x) or DEC.load()")
        return model

    @property
    def cluster_centers_(self) -> np.ndarray:
        """The cluster centres in the embedding, n_clusters x embedding dimensions."""
        return cluster_centres(self._check_fitted())

    def predict_proba(self, x) -> np.ndarray:
        """Soft assignments q: each image's similarity to each centre.

        Parameters
        ----------
        x : array-like
            Images, as for ``fit``.

        Returns
        -------
        numpy.ndarray
            N x n_clusters; rows sum to one.
        """
        return soft_assignments(self._check_fitted(), check_images(x, source="x"))

    def predict(self, x) -> np.ndarray:
        """The cluster of every image.

        Parameters
        ----------
        x : array-like
            Images, as for ``fit``.

        Returns
        -------
        numpy.ndarray
            N cluster ids.
        """
        return cluster_labels(self.predict_proba(x))

    def fit_predict(self, x, y=None) -> np.ndarray:
        """``fit(x, y)``, then the training images' clusters.

        Parameters
        ----------
        x : array-like
            Images, as for ``fit``.
        y : array-like, optional
            True labels, reported only.

        Returns
        -------
        numpy.ndarray
            N cluster ids (``labels_``).
        """
        return self.fit(x, y).labels_

    def transform(self, x) -> np.ndarray:
        """The learned embedding of every image.

        Parameters
        ----------
        x : array-like
            Images, as for ``fit``.

        Returns
        -------
        numpy.ndarray
            N x embedding dimensions.
        """
        return embed(dec_encoder(self._check_fitted()), check_images(x, source="x"))

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model as a ``.keras`` file, which ``DEC.load`` reads back.

        Parameters
        ----------
        path : str or os.PathLike
            The file; ``.keras`` is appended when missing.
        """
        save_model(self._check_fitted(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> DEC:
        """An estimator ready to predict, from a model ``save`` (or the pipeline) wrote.

        Parameters
        ----------
        path : str or os.PathLike
            A ``.keras`` file, or a folder holding one.

        Returns
        -------
        DEC
        """
        estimator = cls()
        estimator.model_ = load_model(path)
        return estimator
