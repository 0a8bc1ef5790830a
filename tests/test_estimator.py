"""The scikit-learn style ``DEC`` estimator: fit, predict, transform, save and load."""

from __future__ import annotations

import numpy as np
import pytest

from dec_lib.config.sections import (
    AutoencoderConfig,
    DECConfig,
    InitConfig,
    PretrainConfig,
    RunConfig,
)
from dec_lib.core.estimator import DEC
from dec_lib.errors import ConfigError, DataError, NotFittedError

N = 400
N_CLUSTERS = 10
EMBEDDING_DIM = 6


def _tiny_config(**dec) -> RunConfig:
    return RunConfig(
        seed=0,
        autoencoder=AutoencoderConfig(hidden_dims=[64, 64, 128], embedding_dim=EMBEDDING_DIM),
        pretrain=PretrainConfig(epochs=3, batch_size=100, optimizer="adam", learning_rate=1e-3,
                                checkpoint_every=0),
        init=InitConfig(n_init=2),
        dec=DECConfig(**{"n_clusters": N_CLUSTERS, "maxiter": 30, "update_interval": 10,
                         "batch_size": 100, "tol": 0.0, **dec}),
    )


@pytest.fixture(scope="module")
def x(mnist_subset) -> np.ndarray:
    return mnist_subset.x[:N]


@pytest.fixture(scope="module")
def fitted(x) -> DEC:
    return DEC(_tiny_config()).fit(x)


def test_fit_sets_the_learned_attributes(fitted):
    assert fitted.labels_.shape == (N,)
    assert fitted.labels_.min() >= 0 and fitted.labels_.max() < N_CLUSTERS
    assert len(np.unique(fitted.labels_)) > 1
    assert fitted.n_iter_ == 30  # tol=0 never converges, so it runs to maxiter
    assert [h.iteration for h in fitted.history_] == [0, 10, 20, 30]
    assert len(fitted.pretrain_.losses) == 3
    assert fitted.cluster_centers_.shape == (N_CLUSTERS, EMBEDDING_DIM)


def test_predict_proba_predict_and_transform_shapes(fitted, x):
    q = fitted.predict_proba(x)
    assert q.shape == (N, N_CLUSTERS)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-5)
    assert (q >= 0).all()
    labels = fitted.predict(x)
    assert labels.shape == (N,)
    np.testing.assert_array_equal(labels, q.argmax(axis=1))
    assert fitted.transform(x).shape == (N, EMBEDDING_DIM)


def test_predict_on_the_training_data_reproduces_labels_(fitted, x):
    np.testing.assert_array_equal(fitted.predict(x), fitted.labels_)


def test_predict_accepts_uint8_images_like_float_ones(fitted, x):
    images = np.rint(x[:30] * 255).astype(np.uint8)
    scaled = images.astype(np.float32) / np.float32(255)
    np.testing.assert_allclose(fitted.predict_proba(images.reshape(30, 28, 28)),
                               fitted.predict_proba(scaled), atol=1e-6)


def test_predict_refuses_bad_images(fitted):
    with pytest.raises(DataError, match="NaN"):
        fitted.predict(np.full((2, 784), np.nan, dtype=np.float32))


def test_the_embedding_and_the_soft_assignment_agree(fitted, x):
    from dec_lib.model.clustering import soft_assignment

    z = fitted.transform(x[:50])
    q = soft_assignment(z, fitted.cluster_centers_, alpha=1.0)
    np.testing.assert_allclose(fitted.predict_proba(x[:50]), q, atol=1e-5)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "transform"])
def test_an_unfitted_estimator_refuses_to_predict(method, x):
    with pytest.raises(NotFittedError, match="not fitted"):
        getattr(DEC(_tiny_config()), method)(x[:5])


def test_an_unfitted_estimator_has_no_centres_and_cannot_be_saved(tmp_path):
    with pytest.raises(NotFittedError):
        _ = DEC().cluster_centers_
    with pytest.raises(NotFittedError):
        DEC().save(tmp_path / "dec.keras")
    assert not (tmp_path / "dec.keras").exists()


def test_save_and_load_give_the_same_predictions(fitted, x, tmp_path):
    fitted.save(tmp_path / "dec.keras")
    loaded = DEC.load(tmp_path / "dec.keras")
    np.testing.assert_array_equal(loaded.predict(x), fitted.predict(x))
    np.testing.assert_allclose(loaded.predict_proba(x), fitted.predict_proba(x), atol=1e-6)
    np.testing.assert_allclose(loaded.transform(x[:20]), fitted.transform(x[:20]), atol=1e-6)
    np.testing.assert_array_equal(loaded.cluster_centers_, fitted.cluster_centers_)


def test_fit_refuses_more_clusters_than_images_before_training():
    images = np.random.default_rng(0).random((5, 784), dtype=np.float32)
    with pytest.raises(ConfigError) as info:
        DEC(_tiny_config()).fit(images)
    assert info.value.key == "dec.n_clusters"


def test_fit_refuses_non_finite_images():
    images = np.zeros((20, 784), dtype=np.float32)
    images[3, 7] = np.inf
    with pytest.raises(DataError, match="index 3"):
        DEC(_tiny_config()).fit(images)


def test_fit_validates_the_config():
    config = _tiny_config()
    config.pretrain.epochs = -1
    with pytest.raises(ConfigError) as info:
        DEC(config).fit(np.zeros((20, 784), dtype=np.float32))
    assert info.value.key == "pretrain.epochs"


def test_the_package_exports_dec_without_starting_tensorflow_on_import():
    import subprocess
    import sys

    script = ("import sys, dec_lib\n"
              "assert 'tensorflow' not in sys.modules, 'import dec_lib started TensorFlow'\n"
              "assert dec_lib.preset('quick').data.n_samples == 2000\n"
              "assert isinstance(dec_lib.RunConfig(), dec_lib.RunConfig)\n"
              "from dec_lib import DEC\n"
              "from dec_lib.core.estimator import DEC as Estimator\n"
              "assert DEC is Estimator and 'tensorflow' in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_labels_given_to_fit_are_checked_and_never_change_the_clusters(x, mnist_subset):
    fitted_blind = DEC(_tiny_config(maxiter=10)).fit(x)
    fitted_seen = DEC(_tiny_config(maxiter=10)).fit(x, mnist_subset.y[:N])
    np.testing.assert_array_equal(fitted_blind.labels_, fitted_seen.labels_)
    with pytest.raises(DataError, match="labels for"):
        DEC(_tiny_config()).fit(x, mnist_subset.y[:N - 1])
