"""Figures: valid PNGs from real digits and a fake clustering, and from the awkward cases."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dec_lib.errors import DataError
from dec_lib.model.metrics import cluster_to_label, contingency
from dec_lib.reports import figures

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class UpdateRecord:
    """The fields of ``dec_lib.model.self_training.UpdateRecord``, which imports TensorFlow."""

    iteration: int
    delta_label: float
    loss: float


def assert_png(path: Path, min_size: int = 100) -> tuple[int, int]:
    path = Path(path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        assert image.getextrema() != ((255, 255),) * len(image.getbands())  # not blank
    assert width > min_size and height > min_size
    return width, height


@pytest.fixture(scope="module")
def fake_clustering(mnist_subset):
    """Cluster = a permutation of the label, with 10% of images reassigned at random."""
    rng = np.random.default_rng(0)
    y = mnist_subset.y
    clusters = (y + 3) % 10
    noisy = rng.random(len(y)) < 0.1
    clusters[noisy] = rng.integers(0, 10, noisy.sum())
    confidence = np.where(noisy, rng.uniform(0.2, 0.6, len(y)), rng.uniform(0.6, 1.0, len(y)))
    return y, clusters, confidence


def test_confusion_matrix_orders_clusters_by_mapped_label(tmp_path, fake_clustering):
    y, clusters, _ = fake_clustering
    mapping = cluster_to_label(y, clusters)
    # Label l went to cluster (l + 3) % 10, so the diagonal starts at cluster 3.
    assert figures.mapped_cluster_order(mapping, range(10), 10) == [3, 4, 5, 6, 7, 8, 9, 0, 1,
                                                                     2]
    path = figures.confusion_matrix_png(contingency(y, clusters).T, list(range(10)), mapping,
                                        tmp_path / "confusion.png")
    assert path == tmp_path / "confusion.png"
    assert_png(path)


def test_confusion_matrix_with_30_clusters_empty_ones_and_json_keys(tmp_path, fake_clustering):
    y, _, _ = fake_clustering
    clusters = np.random.default_rng(1).integers(0, 28, len(y))  # clusters 28, 29 stay empty
    counts = np.zeros((10, 30), dtype=int)
    counts[:, :28] = contingency(y, clusters).T
    mapping = {str(c): label for c, label in cluster_to_label(y, clusters).items()}
    assert figures.mapped_cluster_order(mapping, range(10), 30)[-2:] == [28, 29]
    width, _ = assert_png(figures.confusion_matrix_png(counts, None, mapping,
                                                       tmp_path / "c30.png"))
    assert width > 1000  # wide enough to read 30 columns


def test_confusion_matrix_refuses_mismatched_labels(tmp_path):
    with pytest.raises(DataError, match="3 labels for 2 rows"):
        figures.confusion_matrix_png([[1, 2], [3, 4]], [0, 1, 2], {}, tmp_path / "c.png")


def test_cluster_samples_on_digits_with_empty_clusters(tmp_path, mnist_subset, fake_clustering):
    _, clusters, confidence = fake_clustering
    images = mnist_subset.x.reshape(-1, *mnist_subset.image_shape)
    assert_png(figures.cluster_samples_png(images, clusters, confidence, tmp_path / "s.png",
                                           n_clusters=12))


def test_cluster_samples_edge_cases(tmp_path, mnist_subset):
    images = mnist_subset.x[:30].reshape(-1, 28, 28)
    one = np.zeros(30, dtype=int)
    assert_png(figures.cluster_samples_png(images, one, np.linspace(0, 1, 30),
                                           tmp_path / "single.png"), min_size=60)
    small = np.array([0] * 27 + [2] * 3)  # cluster 1 empty, cluster 2 smaller than a row
    assert_png(figures.cluster_samples_png(images, small, np.ones(30), tmp_path / "small.png",
                                           per_cluster=5))
    rgb = np.random.default_rng(0).integers(0, 255, (12, 16, 16, 3)).astype(np.uint8)
    assert_png(figures.cluster_samples_png(rgb, np.arange(12) % 3, np.ones(12),
                                           tmp_path / "rgb.png"))
    with pytest.raises(DataError, match="reshape flat rows"):
        figures.cluster_samples_png(mnist_subset.x[:4], [0] * 4, [1] * 4, tmp_path / "x.png")
    with pytest.raises(DataError, match="one of each per image"):
        figures.cluster_samples_png(images, one[:5], np.ones(30), tmp_path / "x.png")


def test_embedding_map_with_and_without_clusters(tmp_path, mnist_subset, fake_clustering):
    _, clusters, _ = fake_clustering
    embedding = mnist_subset.x[:, ::40]  # a stand-in 20-d embedding of real digits
    assert_png(figures.embedding_map_png(embedding, clusters, tmp_path / "map.png", sample=500))
    assert_png(figures.embedding_map_png(embedding, None, tmp_path / "unlabelled.png"))
    assert_png(figures.embedding_map_png(embedding, np.zeros(len(embedding), int),
                                         tmp_path / "one.png"))


def test_embedding_map_is_deterministic_and_survives_degenerate_input(tmp_path):
    points = np.random.default_rng(0).normal(size=(400, 5))
    clusters = np.arange(400) % 25
    first = figures.embedding_map_png(points, clusters, tmp_path / "a.png", sample=100)
    second = figures.embedding_map_png(points, clusters, tmp_path / "b.png", sample=100)
    assert first.read_bytes() == second.read_bytes()
    for name, emb, cl in [("point", np.ones((1, 10)), [0]), ("flat", np.ones((50, 3)), None),
                          ("line", np.arange(20.0), np.arange(20) % 2),
                          ("none", np.zeros((0, 10)), np.zeros(0, int))]:
        assert_png(figures.embedding_map_png(emb, cl, tmp_path / f"{name}.png"))


def test_training_curves_with_and_without_data(tmp_path):
    history = [{"iteration": i * 140, "loss": float("nan") if i == 0 else 0.1 / i,
                "delta_label": 1.0 if i == 0 else 0.2 / i, "acc": 0.8 + 0.01 * i}
               for i in range(15)]
    losses = list(0.1 * np.exp(-np.arange(40) / 10))
    assert_png(figures.training_curves_png(losses, history, tmp_path / "curves.png", tol=0.001,
                                           warmup_iterations=700))
    unlabelled = [UpdateRecord(iteration=i * 10, delta_label=0.1, loss=0.5) for i in range(3)]
    assert_png(figures.training_curves_png([], unlabelled, tmp_path / "unlabelled.png"))
    assert_png(figures.training_curves_png([], [], tmp_path / "empty.png"))


def test_cluster_sizes_with_empty_and_single_clusters(tmp_path):
    assert_png(figures.cluster_sizes_png([200, 0, 180, 0, 5], tmp_path / "sizes.png",
                                         mapping={"0": 3, "2": 1, "4": 0}))
    assert_png(figures.cluster_sizes_png([2000], tmp_path / "one.png"))
    assert_png(figures.cluster_sizes_png(np.full(30, 70), tmp_path / "thirty.png"))
    assert_png(figures.cluster_sizes_png([], tmp_path / "none.png"))


def test_no_figure_is_left_in_pyplot(tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    figures.cluster_sizes_png([3, 4], tmp_path / "sizes.png")
    figures.training_curves_png([1.0], [], tmp_path / "curves.png")
    assert plt.get_fignums() == before
