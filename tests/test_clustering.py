"""DEC's two distributions, the clustering layer, and saving/loading the DEC model (model_io)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from dec_lib.config import AutoencoderConfig
from dec_lib.errors import DataError
from dec_lib.model.autoencoder import build_autoencoder, encoder_of
from dec_lib.model.clustering import ClusteringLayer, soft_assignment, target_distribution
from dec_lib.model.dec_model import CLUSTERING_LAYER, build_dec_model, soft_assignments
from dec_lib.model.saving import load_model, save_model
from dec_lib.runtime.seeding import seed_everything

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def points() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(7, 4)), rng.normal(size=(3, 4)) * 2


def _student_t_by_hand(z: np.ndarray, mu: np.ndarray, alpha: float) -> np.ndarray:
    q = np.empty((len(z), len(mu)))
    for i in range(len(z)):
        for j in range(len(mu)):
            dist2 = sum((z[i, k] - mu[j, k]) ** 2 for k in range(z.shape[1]))
            q[i, j] = (1 + dist2 / alpha) ** (-(alpha + 1) / 2)
        q[i] /= q[i].sum()
    return q


# --- soft_assignment / target_distribution ---------------------------------------------------


@pytest.mark.parametrize("alpha", [1.0, 2.5])
def test_soft_assignment_matches_the_student_t_formula(points, alpha):
    z, mu = points
    q = soft_assignment(z, mu, alpha=alpha)
    assert q.shape == (7, 3)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(q, _student_t_by_hand(z, mu, alpha), rtol=1e-10)


def test_alpha_changes_the_soft_assignment(points):
    z, mu = points
    assert not np.allclose(soft_assignment(z, mu, 1.0), soft_assignment(z, mu, 2.5))


def test_a_point_on_a_centre_is_assigned_mostly_to_it():
    mu = np.array([[0.0, 0.0], [10.0, 0.0]])
    q = soft_assignment(np.array([[10.0, 0.0]]), mu)
    # alpha=1: q ∝ 1/(1+d²) -> 1/101 for the far centre, 1 for its own
    np.testing.assert_allclose(q, [[1 / 102, 101 / 102]])


def test_target_distribution_matches_its_formula():
    q = np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])
    f = q.sum(axis=0)
    expected = np.empty_like(q)
    for i in range(len(q)):
        for j in range(q.shape[1]):
            expected[i, j] = q[i, j] ** 2 / f[j]
        expected[i] /= expected[i].sum()
    p = target_distribution(q)
    np.testing.assert_allclose(p, expected, rtol=1e-12)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)


def test_target_distribution_sharpens_confident_rows(points):
    q = soft_assignment(*points)
    p = target_distribution(q)
    assert (p.max(axis=1) >= q.max(axis=1) - 1e-12).all()
    np.testing.assert_array_equal(p.argmax(axis=1), q.argmax(axis=1))


# --- ClusteringLayer -------------------------------------------------------------------------


def _layer(n_clusters: int, alpha: float, centres: np.ndarray) -> ClusteringLayer:
    layer = ClusteringLayer(n_clusters, alpha=alpha)
    layer.build((None, centres.shape[1]))
    layer.set_weights([centres.astype(np.float32)])
    return layer


@pytest.mark.parametrize("alpha", [1.0, 2.5])
def test_layer_output_equals_soft_assignment(points, alpha):
    z, mu = points
    layer = _layer(3, alpha, mu)
    out = keras.ops.convert_to_numpy(layer(z.astype(np.float32)))
    assert out.shape == (7, 3)
    assert layer.compute_output_shape((7, 4)) == (7, 3)
    np.testing.assert_allclose(out, soft_assignment(z.astype(np.float32), mu.astype(np.float32),
                                                    alpha), rtol=1e-5, atol=1e-7)


def test_layer_centres_are_its_only_trainable_weights():
    layer = ClusteringLayer(5)
    layer.build((None, 10))
    assert [tuple(w.shape) for w in layer.trainable_weights] == [(5, 10)]


def test_get_config_keeps_n_clusters_and_alpha():
    config = ClusteringLayer(4, alpha=2.5, name="c").get_config()
    assert config["n_clusters"] == 4
    assert config["alpha"] == 2.5
    assert config["name"] == "c"


def test_from_config_reproduces_the_outputs_with_alpha_not_one(points):
    z, mu = points
    z = z.astype(np.float32)
    original = _layer(3, 2.5, mu)
    rebuilt = ClusteringLayer.from_config(original.get_config())
    rebuilt.build((None, 4))
    rebuilt.set_weights(original.get_weights())
    assert rebuilt.alpha == 2.5
    np.testing.assert_allclose(keras.ops.convert_to_numpy(rebuilt(z)),
                               keras.ops.convert_to_numpy(original(z)), rtol=1e-6)
    # and alpha does matter, so the comparison above could have failed
    default_alpha = _layer(3, 1.0, mu)
    assert not np.allclose(keras.ops.convert_to_numpy(default_alpha(z)),
                           keras.ops.convert_to_numpy(original(z)), rtol=1e-3)


def test_a_layer_of_members_gives_the_mean_of_each_members_q():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(9, 6)).astype(np.float32)  # three members' 2-d embeddings side by side
    centres = rng.normal(size=(3, 4, 2)).astype(np.float32)
    layer = ClusteringLayer(4, alpha=1.5, members=3)
    layer.build((None, 6))
    layer.set_weights([centres])
    out = keras.ops.convert_to_numpy(layer(z))
    each = [soft_assignment(z[:, 2 * i:2 * i + 2], centres[i], 1.5) for i in range(3)]
    np.testing.assert_allclose(out, np.mean(each, axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(soft_assignment(z, centres, 1.5), np.mean(each, axis=0),
                               rtol=1e-12)
    # Not the q of one set of centres over the whole embedding: the mean is what is computed.
    assert not np.allclose(out, soft_assignment(z, np.concatenate(list(centres), axis=1), 1.5),
                           atol=1e-3)
    rebuilt = ClusteringLayer.from_config(layer.get_config())
    rebuilt.build((None, 6))
    assert rebuilt.members == 3 and tuple(rebuilt.centres.shape) == (3, 4, 2)


def test_a_layer_saved_before_members_existed_loads_as_one_member():
    config = ClusteringLayer(4, alpha=2.5).get_config()
    del config["members"]
    assert ClusteringLayer.from_config(config).members == 1


def test_an_embedding_that_does_not_split_into_the_members_is_refused():
    with pytest.raises(ValueError, match="7 wide cannot be 3 members"):
        ClusteringLayer(4, members=3).build((None, 7))


# --- saving and loading (dec_lib.model.saving) ---------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dec_model() -> keras.Model:
    seed_everything(0)
    autoencoder = build_autoencoder(784, AutoencoderConfig(hidden_dims=[32, 32, 64],
                                                           embedding_dim=5))
    centres = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
    return build_dec_model(encoder_of(autoencoder), centres, alpha=2.0)


def test_saved_dec_model_predicts_identically_in_a_new_process(tiny_dec_model, tmp_path,
                                                               mnist_subset):
    x = mnist_subset.x[:64]
    x_path = tmp_path / "x.npy"
    np.save(x_path, x)
    path = save_model(tiny_dec_model, tmp_path / "dec.keras")
    assert path == tmp_path / "dec.keras"
    assert path.is_file()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    expected = soft_assignments(tiny_dec_model, x)

    out_path = tmp_path / "q.npy"
    script = textwrap.dedent(f"""
        import numpy as np
        from dec_lib.model.dec_model import soft_assignments
        from dec_lib.model.saving import load_model
        model = load_model({str(path)!r})
        assert model.get_layer({CLUSTERING_LAYER!r}).alpha == 2.0
        np.save({str(out_path)!r}, soft_assignments(model, np.load({str(x_path)!r})))
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    reloaded = np.load(out_path)
    assert reloaded.shape == (64, 4)
    np.testing.assert_allclose(reloaded, expected, atol=1e-6, rtol=0)


def test_reloaded_model_keeps_alpha_and_centres_in_process(tiny_dec_model, tmp_path):
    path = save_model(tiny_dec_model, tmp_path / "model")  # the suffix is added
    assert path.name == "model.keras"
    reloaded = load_model(path)
    layer = reloaded.get_layer(CLUSTERING_LAYER)
    assert isinstance(layer, ClusteringLayer)
    assert layer.alpha == 2.0
    np.testing.assert_array_equal(layer.get_weights()[0],
                                  tiny_dec_model.get_layer(CLUSTERING_LAYER).get_weights()[0])


def test_load_model_accepts_a_directory_holding_one_model(tiny_dec_model, tmp_path):
    save_model(tiny_dec_model, tmp_path / "dir" / "dec.keras")
    assert load_model(tmp_path / "dir").get_layer(CLUSTERING_LAYER).n_clusters == 4


def test_load_model_refuses_a_lambda_layer(tmp_path):
    inputs = keras.Input(shape=(3,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(inputs))
    model.save(tmp_path / "lambda.keras")
    with pytest.raises((DataError, ValueError)) as info:
        load_model(tmp_path / "lambda.keras")
    assert "lambda" in str(info.value).lower()


def test_load_model_refuses_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match="no such model file"):
        load_model(tmp_path / "absent.keras")
    (tmp_path / "junk.keras").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=r"junk\.keras"):
        load_model(tmp_path / "junk.keras")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="found 0"):
        load_model(tmp_path / "empty")
