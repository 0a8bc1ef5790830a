"""What the registered model accepts as images, and what the pyfunc answers."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from dec_lib.errors import DataError
from dec_lib.mlops.serving import INFO_ARTIFACT, MODEL_ARTIFACT, DECPyfuncModel, to_image_batch

N_FEATURES = 784


@pytest.fixture(scope="module")
def pixels(mnist_subset) -> np.ndarray:
    """Three real digits as uint8 Nx28x28, the way a client usually holds them."""
    return np.rint(mnist_subset.x[:3] * 255).astype(np.uint8).reshape(3, 28, 28)


@pytest.fixture(scope="module")
def expected(pixels) -> np.ndarray:
    return pixels.reshape(3, N_FEATURES).astype(np.float32) / np.float32(255)


# --- accepted inputs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: p, id="uint8 Nx28x28"),
        pytest.param(lambda p: p[..., None], id="uint8 Nx28x28x1"),
        pytest.param(lambda p: p.reshape(3, -1), id="uint8 Nx784"),
        pytest.param(lambda p: p.reshape(3, -1).astype(np.int64), id="int64 Nx784"),
        pytest.param(lambda p: p.reshape(3, -1) / 255.0, id="float64 Nx784 in [0,1]"),
        pytest.param(lambda p: (p / np.float32(255)).astype(np.float32), id="float32 Nx28x28"),
        pytest.param(lambda p: pd.DataFrame(p.reshape(3, -1)), id="DataFrame uint8"),
        pytest.param(lambda p: pd.DataFrame(p.reshape(3, -1) / 255.0), id="DataFrame float"),
        pytest.param(lambda p: p.tolist(), id="nested lists of ints"),
        pytest.param(lambda p: p.reshape(3, -1).tolist(), id="lists of 784 ints"),
        pytest.param(lambda p: np.array(p.tolist(), dtype=object), id="object array of ints"),
        pytest.param(lambda p: _object_rows(p.tolist()), id="object array of nested lists"),
        pytest.param(lambda p: {"images": p}, id="dict with one entry"),
        pytest.param(lambda p: pd.DataFrame({"images": p.tolist()}), id="DataFrame of lists"),
    ],
)
def test_accepted_inputs_become_float32_pixels_in_unit_range(make, pixels, expected):
    out = to_image_batch(make(pixels), N_FEATURES)
    assert out.dtype == np.float32
    assert out.shape == (3, N_FEATURES)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-7)


def _object_rows(rows: list) -> np.ndarray:
    """A 1-D object array whose elements are whole images, as MLflow hands a TensorSpec(object)."""
    out = np.empty(len(rows), dtype=object)
    for i, row in enumerate(rows):
        out[i] = row
    return out


def test_uint8_pixels_are_divided_by_255_exactly():
    x = np.arange(N_FEATURES, dtype=np.int64).reshape(1, -1) % 256
    out = to_image_batch(x.astype(np.uint8).reshape(1, 28, 28), N_FEATURES)
    np.testing.assert_array_equal(out, x.astype(np.float32) / np.float32(255))


def test_json_style_nested_integers_match_the_uint8_array(pixels):
    as_json = json.loads(json.dumps({"inputs": pixels.tolist()}))["inputs"]
    np.testing.assert_array_equal(to_image_batch(as_json, N_FEATURES),
                                  to_image_batch(pixels, N_FEATURES))


# --- refused inputs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "match"),
    [
        pytest.param(np.zeros((2, 27, 27), np.uint8), "784 pixels", id="27x27"),
        pytest.param(np.zeros((2, 783), np.float32), "784 pixels", id="783 features"),
        pytest.param(np.zeros((2, 28, 28, 3), np.uint8), "784 pixels", id="RGB"),
        pytest.param(np.full((2, 784), np.nan, np.float32), "NaN", id="NaN"),
        pytest.param(np.full((2, 784), 1.5, np.float32), "out of range", id="float > 1"),
        pytest.param(np.full((2, 784), 255.0), "out of range", id="float 0-255"),
        pytest.param(np.full((2, 784), -0.5), "out of range", id="negative float"),
        pytest.param(np.full((2, 784), 256, np.int64), "out of range", id="int > 255"),
        pytest.param(np.array([["a"] * 784]), "dtype", id="strings"),
        pytest.param([["white"] * 784], "dtype", id="list of strings"),
        pytest.param(np.array([["a"] * 784], dtype=object), "numeric", id="object strings"),
        pytest.param(np.array([[1, 2], [3]], dtype=object), "numeric", id="ragged"),
        pytest.param(np.array([[None] * 784], dtype=object), "numeric", id="None pixels"),
        pytest.param(np.array([[300] * 784], dtype=object), "out of range", id="object > 255"),
        pytest.param(np.zeros(784, np.uint8), "shape", id="one image without batch axis"),
        pytest.param(np.zeros((0, 784), np.float32), "no images", id="empty float batch"),
    ],
)
def test_bad_inputs_are_refused_with_a_data_error(value, match):
    with pytest.raises(DataError, match=match):
        to_image_batch(value, N_FEATURES)


@pytest.mark.parametrize("shape", [(0,), (0, 784)])
def test_an_empty_object_batch_is_refused_with_a_data_error(shape):
    with pytest.raises(DataError, match="no images"):
        to_image_batch(np.empty(shape, dtype=object), N_FEATURES)


def test_numeric_strings_are_refused_however_they_arrive():
    text = [["0", "128", "255", "7"] * 196]
    with pytest.raises(DataError):
        to_image_batch(np.array(text), N_FEATURES)
    with pytest.raises(DataError):
        to_image_batch(np.array(text, dtype=object), N_FEATURES)


# --- DECPyfuncModel --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pyfunc(tmp_path_factory) -> tuple[DECPyfuncModel, object]:
    from dec_lib.config import AutoencoderConfig
    from dec_lib.model.autoencoder import build_autoencoder, encoder_of
    from dec_lib.model.dec_model import build_dec_model
    from dec_lib.model.saving import save_model
    from dec_lib.runtime.seeding import seed_everything

    seed_everything(0)
    encoder = encoder_of(build_autoencoder(N_FEATURES, AutoencoderConfig(hidden_dims=[16],
                                                                         embedding_dim=3)))
    centres = np.random.default_rng(0).normal(size=(3, 3)).astype(np.float32)
    model = build_dec_model(encoder, centres, alpha=1.0)
    directory = tmp_path_factory.mktemp("pyfunc")
    model_path = save_model(model, directory / "dec.keras")
    info_path = directory / "model_info.json"
    info_path.write_text(json.dumps({"mapping": {"0": 7, "1": 4}}))  # cluster 2 unmapped
    context = SimpleNamespace(artifacts={MODEL_ARTIFACT: str(model_path),
                                         INFO_ARTIFACT: str(info_path)})
    wrapper = DECPyfuncModel()
    wrapper.load_context(context)
    return wrapper, model


def test_pyfunc_answers_cluster_label_and_confidence(pyfunc, mnist_subset):
    from dec_lib.model.dec_model import soft_assignments

    wrapper, model = pyfunc
    assert wrapper.n_features == N_FEATURES
    assert wrapper.mapping == {0: 7, 1: 4}
    x = mnist_subset.x[:50]
    images = np.rint(x * 255).astype(np.uint8).reshape(-1, 28, 28)
    frame = wrapper.predict(None, images)

    q = soft_assignments(model, images.reshape(50, -1).astype(np.float32) / np.float32(255))
    assert list(frame.columns) == ["cluster", "label", "confidence"]
    assert len(frame) == 50
    np.testing.assert_array_equal(frame["cluster"].to_numpy(), q.argmax(axis=1))
    assert frame["cluster"].dtype == np.int64 and frame["label"].dtype == np.int64
    expected_labels = [{0: 7, 1: 4}.get(int(c), -1) for c in q.argmax(axis=1)]
    np.testing.assert_array_equal(frame["label"].to_numpy(), expected_labels)
    np.testing.assert_allclose(frame["confidence"].to_numpy(), q.max(axis=1), rtol=1e-6)
    assert ((frame["confidence"] > 1 / 3 - 1e-6) & (frame["confidence"] <= 1)).all()


def test_pyfunc_gives_the_same_answer_for_every_accepted_layout(pyfunc, mnist_subset):
    wrapper, _ = pyfunc
    images = np.rint(mnist_subset.x[:20] * 255).astype(np.uint8)
    reference = wrapper.predict(None, images.reshape(-1, 28, 28))
    for layout in (images, images / 255.0, pd.DataFrame(images), images.tolist()):
        pd.testing.assert_frame_equal(wrapper.predict(None, layout), reference,
                                      check_exact=False, rtol=1e-6)


def test_pyfunc_refuses_bad_images(pyfunc):
    from mlflow.exceptions import MlflowException

    wrapper, _ = pyfunc
    with pytest.raises(MlflowException, match="784 pixels") as raised:
        wrapper.predict(None, np.zeros((1, 10, 10), np.uint8))
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"  # a 400 when served
    assert isinstance(raised.value.__cause__, DataError)


# --- a registered version, loaded where dec_lib is not installed -----------------------------

LOAD_IN_A_FRESH_PROCESS = """
import json, sys
import numpy as np
import mlflow

model = mlflow.pyfunc.load_model(sys.argv[1])
frame = model.predict(np.load(sys.argv[2]))
print(json.dumps({"module": sys.modules["dec_lib.mlops.serving"].__file__,
                  "class": type(model.unwrap_python_model()).__module__,
                  "answer": frame.to_dict(orient="list")}))
"""


def test_a_registered_version_loads_its_own_copy_of_dec_lib_and_predicts(tiny_model, tmp_path,
                                                                         pixels):
    """MLflow pickles the pyfunc class by its module path and puts the version's ``code/`` on
    ``sys.path`` when loading it: that copy must hold ``dec_lib`` itself, so the model loads
    wherever it is served (the MLServer image, ``mlflow models serve``), installed or not."""
    import os
    import subprocess
    import sys

    import mlflow
    from mlflow import MlflowClient
    from servers import clean_env

    from dec_lib.mlops import tracking
    from dec_lib.mlops.registry import log_and_register

    model_dir, _ = tiny_model
    uri = tracking.sqlite_uri(tmp_path)
    experiment = MlflowClient(uri).create_experiment(
        "serving", artifact_location=tracking.artifact_root_for(uri))
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(experiment_id=experiment) as run:
            log_and_register(model_dir / "dec.keras", mapping={0: 1, 1: 2, 2: 3},
                             image_shape=(28, 28), model_name="served", metrics={},
                             run_id=run.info.run_id, work_dir=tmp_path / "register")
        files = Path(mlflow.artifacts.download_artifacts(artifact_uri="models:/served/1",
                                                         dst_path=str(tmp_path / "version")))
        expected = mlflow.pyfunc.load_model(str(files)).predict(pixels)
    finally:
        mlflow.set_tracking_uri(previous)
    np.save(tmp_path / "images.npy", pixels)

    env = clean_env()
    env.pop("PYTHONPATH", None)  # only the version's own copy, or the installed package
    done = subprocess.run([sys.executable, "-c", LOAD_IN_A_FRESH_PROCESS, str(files),
                           str(tmp_path / "images.npy")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(loaded["module"]).is_relative_to(files / "code" / "dec_lib")
    assert loaded["class"] == "dec_lib.mlops.serving"
    pd.testing.assert_frame_equal(pd.DataFrame(loaded["answer"]), expected, check_exact=False,
                                  rtol=1e-6)
