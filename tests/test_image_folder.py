"""A folder of PNG images: what is read, what is refused, and ``dec-pipeline predict`` on one."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import register_small_dec
from PIL import Image

from dec_lib.data import image_folder
from dec_lib.data.image_folder import load_image_folder, png_files
from dec_lib.errors import DataError
from pipelines.cli import main


@pytest.fixture(scope="module")
def digits(mnist_subset) -> np.ndarray:
    """Five real digits as uint8 N×28×28."""
    return np.rint(mnist_subset.x[:5] * 255).astype(np.uint8).reshape(5, 28, 28)


def _write_pngs(folder: Path, images: np.ndarray, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for image, name in zip(images, names, strict=True):
        Image.fromarray(image).save(folder / name)
    return folder


# --- what is read ----------------------------------------------------------------------------


def test_grayscale_pngs_round_trip_in_name_order(tmp_path, digits):
    # Written out of order, with a file that is not a PNG beside them.
    names = ["d.png", "b.png", "e.png", "a.png", "c.png"]
    folder = _write_pngs(tmp_path / "images", digits, names)
    (folder / "notes.txt").write_text("not an image")

    x = load_image_folder(folder)

    assert x.dtype == np.float32 and x.shape == (5, 28, 28)
    assert x.min() >= 0.0 and x.max() <= 1.0
    order = np.argsort(names)  # row i is the i-th name in sorted order
    np.testing.assert_allclose(x, digits[order] / 255.0, rtol=0, atol=1 / 255)
    np.testing.assert_array_equal(np.rint(x * 255).astype(np.uint8), digits[order])
    assert [p.name for p in png_files(folder)] == sorted(names)


def test_colour_pngs_are_converted_to_grayscale(tmp_path, digits):
    gray = np.repeat(digits[0][..., None], 3, axis=2)
    red = np.zeros((28, 28, 3), np.uint8)
    red[..., 0] = 255
    rgba = np.concatenate([gray, np.full((28, 28, 1), 7, np.uint8)], axis=2)  # alpha ignored
    Image.fromarray(gray).save(tmp_path / "1-gray-rgb.png")
    Image.fromarray(red).save(tmp_path / "2-red-rgb.png")
    Image.fromarray(rgba).save(tmp_path / "3-gray-rgba.png")

    x = load_image_folder(tmp_path)

    assert x.shape == (3, 28, 28)
    np.testing.assert_allclose(x[0], digits[0] / 255.0, atol=1 / 255)
    np.testing.assert_allclose(x[1], 0.299, atol=1 / 255)  # ITU-R 601-2 luma of pure red
    np.testing.assert_allclose(x[2], digits[0] / 255.0, atol=1 / 255)


# --- what is refused -------------------------------------------------------------------------


def test_an_empty_folder_is_refused(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match="no PNG images") as error:
        load_image_folder(tmp_path)
    assert error.value.source == str(tmp_path)


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        load_image_folder(tmp_path / "nope")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        pytest.param(lambda png: b"this is not an image", "not a PNG", id="garbage"),
        pytest.param(lambda png: png[: len(png) // 2], "corrupt or truncated", id="truncated"),
        pytest.param(lambda png: png[:29] + b"XXXX" + png[33:], "not a PNG",
                     id="bad header checksum"),
        pytest.param(lambda png: png[:100] + bytes(50) + png[150:], "corrupt or truncated",
                     id="damaged pixel data"),
        pytest.param(lambda png: b"", "not a PNG", id="empty file"),
    ],
)
def test_a_corrupt_png_is_refused_naming_the_file(tmp_path, digits, content, match):
    _write_pngs(tmp_path, digits[:2], ["a.png", "c.png"])
    noise = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "b.png")  # incompressible, so half is really missing
    bad = tmp_path / "b.png"
    bad.write_bytes(content(bad.read_bytes()))
    with pytest.raises(DataError, match=match) as error:
        load_image_folder(tmp_path)
    assert error.value.source == str(bad)


def test_a_jpeg_named_png_is_refused(tmp_path, digits):
    Image.fromarray(digits[0]).save(tmp_path / "a.png", format="JPEG")
    with pytest.raises(DataError, match="not a PNG") as error:
        load_image_folder(tmp_path)
    assert error.value.source == str(tmp_path / "a.png")


def test_mixed_sizes_are_refused_naming_both_files(tmp_path, digits):
    _write_pngs(tmp_path, digits[:2], ["a.png", "b.png"])
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "c.png")
    with pytest.raises(DataError, match="same size") as error:
        load_image_folder(tmp_path)
    assert error.value.source == str(tmp_path / "c.png")
    assert "30×20" in error.value.problem and "a.png is 28×28" in error.value.problem


def test_sixteen_bit_images_are_refused_rather_than_clipped(tmp_path):
    Image.fromarray(np.full((28, 28), 40_000, np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(DataError, match="8-bit") as error:
        load_image_folder(tmp_path)
    assert error.value.source == str(tmp_path / "deep.png")


def test_an_image_over_the_pixel_cap_is_refused_before_decoding(tmp_path, digits, monkeypatch):
    _write_pngs(tmp_path, digits[:1], ["a.png"])
    monkeypatch.setattr(image_folder, "MAX_IMAGE_PIXELS", 28 * 28 - 1)
    with pytest.raises(DataError, match="decompression bomb") as error:
        load_image_folder(tmp_path)
    assert error.value.source == str(tmp_path / "a.png")


# --- dec-pipeline predict ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def registered_model(tmp_path_factory, mnist_subset) -> tuple[str, str]:
    """(tracking URI, model URI) of a tiny DEC, trained in seconds and registered in SQLite."""
    uri, model_uri, _ = register_small_dec(tmp_path_factory.mktemp("registry"), mnist_subset,
                                           "dec-test")
    return uri, model_uri


@pytest.fixture
def restore_tracking_uri():
    """``predict --mlflow-uri`` sets MLflow's process-wide URI; put it back afterwards."""
    import mlflow

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    mlflow.set_tracking_uri(previous)


def test_predict_reads_a_png_folder_and_names_each_file(registered_model, digits, tmp_path,
                                                        restore_tracking_uri):
    import mlflow

    tracking_uri, model_uri = registered_model
    names = ["7.png", "10.png", "2.png", "a.png", "b.png"]
    folder = _write_pngs(tmp_path / "images", digits, names)
    output = tmp_path / "out" / "clusters.csv"

    assert main(["predict", "--model", model_uri, "--input", str(folder),
                 "--output", str(output), "--mlflow-uri", tracking_uri]) == 0

    frame = pd.read_csv(output)
    assert list(frame.columns) == ["index", "file", "cluster", "label", "confidence"]
    assert frame["file"].tolist() == sorted(names)
    assert frame["index"].tolist() == list(range(5))
    expected = mlflow.pyfunc.load_model(model_uri).predict(
        digits[[names.index(n) for n in sorted(names)]])
    np.testing.assert_array_equal(frame["cluster"], expected["cluster"])
    np.testing.assert_array_equal(frame["label"], expected["label"])
    np.testing.assert_allclose(frame["confidence"], expected["confidence"], rtol=1e-6)
    assert sorted(os.listdir(output.parent)) == ["clusters.csv"]  # no temporary file left


def test_predict_still_reads_npz_without_a_file_column(registered_model, digits, tmp_path,
                                                       restore_tracking_uri):
    tracking_uri, model_uri = registered_model
    np.savez(tmp_path / "images.npz", x=digits)
    output = tmp_path / "clusters.csv"
    assert main(["predict", "--model", model_uri, "--input", str(tmp_path / "images.npz"),
                 "--output", str(output), "--mlflow-uri", tracking_uri]) == 0
    lines = output.read_text().splitlines()
    assert lines[0] == "index,cluster,label,confidence" and len(lines) == 6


def test_predict_on_a_bad_png_fails_in_one_line_and_keeps_the_old_output(
        registered_model, digits, tmp_path, capsys, restore_tracking_uri):
    tracking_uri, model_uri = registered_model
    folder = _write_pngs(tmp_path / "images", digits[:2], ["a.png", "b.png"])
    (folder / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    output = tmp_path / "clusters.csv"
    output.write_text("previous results\n")

    assert main(["predict", "--model", model_uri, "--input", str(folder),
                 "--output", str(output), "--mlflow-uri", tracking_uri]) == 1

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(folder / "c.png") in err[0]
    assert output.read_text() == "previous results\n"


def test_predict_prefers_idx_files_in_a_folder_that_also_holds_pngs(
        registered_model, digits, tmp_path, write_idx, restore_tracking_uri):
    tracking_uri, model_uri = registered_model
    folder = _write_pngs(tmp_path / "mixed", digits, [f"{i}.png" for i in range(5)])
    write_idx(folder / "t10k-images-idx3-ubyte", digits[:3])
    output = tmp_path / "clusters.csv"
    assert main(["predict", "--model", model_uri, "--input", str(folder),
                 "--output", str(output), "--mlflow-uri", tracking_uri]) == 0
    lines = output.read_text().splitlines()
    assert lines[0] == "index,cluster,label,confidence" and len(lines) == 4
