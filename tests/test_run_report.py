"""The evaluate step's figures and report from plain arrays: labelled, unlabelled, flat images."""

import json

import numpy as np
import pytest
from PIL import Image

from dec_lib.model.metrics import evaluate_clustering
from dec_lib.reports import run_report


def _outputs(n=120, k=4, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.dirichlet(np.ones(k), size=n)
    q[:, k - 1] = 0  # a trailing empty cluster: contingency cannot see it
    q /= q.sum(axis=1, keepdims=True)
    return rng.random((n, 64), dtype=np.float32), rng.normal(size=(n, 5)), q


def _write(tmp_path, x, image_shape, q, y, pretrain_losses=(0.3, 0.2), updates=None):
    clusters = q.argmax(axis=1)
    evaluation = evaluate_clustering(y, clusters) if y is not None else None
    return run_report.write_run_report(
        tmp_path, title="t", metrics={"acc": evaluation.acc} if evaluation else {},
        cluster_sizes=np.bincount(clusters, minlength=q.shape[1]).tolist(),
        confusion=evaluation.confusion if evaluation else None,
        labels=evaluation.labels if evaluation else None,
        mapping=evaluation.mapping if evaluation else {}, x=x, image_shape=image_shape,
        embedding=np.zeros((len(x), 3)) + np.arange(len(x))[:, None], q=q, y=y,
        pretrain_losses=list(pretrain_losses),
        dec_history={"tol": 0.01, "warmup_iterations": 0, "updates": updates or []})


def _valid_png(path):
    with Image.open(path) as image:
        image.verify()
    return path.stat().st_size > 0


def test_labelled_8x8_images_get_all_five_figures_and_a_report(tmp_path):
    x, _, q = _outputs()
    y = np.arange(len(x)) % 3
    files = _write(tmp_path, x, (8, 8), q, y,
                   updates=[{"iteration": 0, "loss": None, "delta_label": 1.0, "acc": 0.4},
                            {"iteration": 20, "loss": 0.1, "delta_label": 0.2, "acc": 0.5}])
    assert set(files) == {*run_report.FIGURES, "report.md", "report.html"}
    assert all(_valid_png(files[name]) for name in run_report.FIGURES)
    html = files["report.html"].read_text()
    assert html.count("data:image/png;base64,") == 5
    assert "(confusion_matrix.png)" in files["report.md"].read_text()


def test_unlabelled_flat_data_draws_what_applies_and_says_why(tmp_path, caplog):
    x, _, q = _outputs()
    with caplog.at_level("INFO", logger="dec_lib.reports.run_report"):
        files = _write(tmp_path, x, (64,), q, None, pretrain_losses=())
    assert set(files) == {"embedding_map.png", "training_curves.png", "cluster_sizes.png",
                          "report.md", "report.html"}
    assert "no sample grid" in caplog.text
    assert all(_valid_png(files[name]) for name in files if name.endswith(".png"))


def test_confusion_is_padded_to_every_cluster_and_label():
    y = np.array([0, 0, 2, 2, 2])
    clusters = np.array([1, 1, 0, 0, 1])
    counts = run_report.label_confusion(y, clusters, n_clusters=4, labels=[0, 1, 2])
    assert counts.tolist() == [[0, 2, 0, 0], [0, 0, 0, 0], [2, 1, 0, 0]]


def test_training_logs_round_trip_and_missing_ones_are_empty(tmp_path):
    run_report.save_pretrain_losses(tmp_path / "ae", [0.5, float("nan"), 0.25])
    run_report.save_dec_history(tmp_path / "dec", [
        {"iteration": 0, "loss": float("nan"), "delta_label": 1.0}], tol=0.001,
        warmup_iterations=5)
    assert json.loads((tmp_path / "dec" / "history.json").read_text())["updates"][0]["loss"] \
        is None  # strict JSON: no NaN
    losses = run_report.read_pretrain_losses(tmp_path / "ae" / "autoencoder.keras")
    assert losses[0] == 0.5 and np.isnan(losses[1]) and losses[2] == 0.25
    history = run_report.read_dec_history(tmp_path / "dec")
    assert history["tol"] == 0.001 and history["warmup_iterations"] == 5
    assert run_report.read_pretrain_losses(tmp_path / "none") == []
    assert run_report.read_dec_history(tmp_path / "none")["updates"] == []


@pytest.mark.parametrize("shape, tiles", [((64,), None), ((4, 4, 4), (10, 4, 4, 4)),
                                          ((4, 4, 5), None), ((2, 2, 2, 2), None),
                                          ((8, 2), (10, 8, 2))])
def test_the_sample_grid_takes_only_grey_rgb_or_rgba_pictures(shape, tiles):
    x = np.zeros((10, int(np.prod(shape))), np.float32)
    result = run_report._tiles(x, shape)
    assert (None if result is None else result.shape) == tiles
