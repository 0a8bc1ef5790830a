"""Data sets behind s3:// URIs, read from moto's S3-compatible server on loopback.

The server is a real process reached the way MinIO is (``AWS_ENDPOINT_URL``), so these tests
exercise the same fsspec/s3fs path a cluster's ingest pod takes; only the store is local.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dec_lib.data.datasets import load_dataset, load_dataset_with_provenance
from dec_lib.data.remote import download, is_remote
from dec_lib.errors import DataError
from dec_lib.steps.common import fingerprint
from tests.servers import S3_TEST_CREDENTIALS, s3_server

BUCKET = "dec-data"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A boto3 client on a fresh moto server with one bucket; the environment points at it."""
    import boto3

    root = tmp_path_factory.mktemp("moto")
    with s3_server(root) as url, pytest.MonkeyPatch.context() as env:
        for name, value in {**S3_TEST_CREDENTIALS, "AWS_ENDPOINT_URL": url}.items():
            env.setenv(name, value)
        client = boto3.client("s3", endpoint_url=url)
        client.create_bucket(Bucket=BUCKET)
        yield client


def _put_npz(s3, key, **arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    s3.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())
    return f"s3://{BUCKET}/{key}"


def _digits(mnist_subset, n=200):
    return (mnist_subset.x[:n] * 255).round().astype(np.uint8).reshape(n, 28, 28), \
        mnist_subset.y[:n]


def test_an_npz_on_s3_reads_as_the_same_file_would_locally(s3, mnist_subset, tmp_path):
    x, y = _digits(mnist_subset)
    uri = _put_npz(s3, "v1/digits.npz", x=x, y=y)
    np.savez(tmp_path / "digits.npz", x=x, y=y)
    remote, provenance = load_dataset_with_provenance(uri)
    local = load_dataset(tmp_path / "digits.npz")
    assert np.array_equal(remote.x, local.x) and np.array_equal(remote.y, local.y)
    assert remote.source == uri and remote.image_shape == (28, 28)
    assert provenance.n_files == 1 and provenance.n_bytes == (tmp_path / "digits.npz").stat(
        ).st_size
    assert len(provenance.sha256) == 64


def test_an_idx_folder_under_an_s3_prefix_is_read_with_its_labels(s3, mnist_subset, write_idx,
                                                                  tmp_path):
    x, y = _digits(mnist_subset, 120)
    for name, array in (("train-images-idx3-ubyte.gz", x), ("train-labels-idx1-ubyte.gz", y)):
        s3.put_object(Bucket=BUCKET, Key=f"idx/{name}",
                      Body=write_idx(tmp_path / name, array.astype(np.uint8)).read_bytes())
    s3.put_object(Bucket=BUCKET, Key="idx/README.txt", Body=b"not data: not downloaded")
    dataset = load_dataset(f"s3://{BUCKET}/idx/")
    assert dataset.n_samples == 120 and np.array_equal(dataset.y, y)
    assert dataset.source == f"s3://{BUCKET}/idx/"


def test_a_png_folder_on_s3_is_read_in_file_name_order(s3, mnist_subset):
    x, _ = _digits(mnist_subset, 12)
    for i, image in enumerate(x):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        s3.put_object(Bucket=BUCKET, Key=f"png/{i:03d}.png", Body=buffer.getvalue())
    dataset = load_dataset(f"s3://{BUCKET}/png")
    assert dataset.n_samples == 12 and dataset.y is None and dataset.image_shape == (28, 28)
    assert np.array_equal((dataset.x * 255).round().astype(np.uint8).reshape(12, 28, 28), x)


def test_an_object_replaced_under_the_same_uri_is_new_data(s3, mnist_subset):
    x, y = _digits(mnist_subset)
    uri = _put_npz(s3, "nightly/digits.npz", x=x, y=y)
    before, first = load_dataset_with_provenance(uri)
    again, same = load_dataset_with_provenance(uri)
    assert fingerprint(before.x, before.y) == fingerprint(again.x, again.y)
    assert first.sha256 == same.sha256
    # Same pixels, other labels: the gate scores against labels, so this is new data too.
    _put_npz(s3, "nightly/digits.npz", x=x, y=np.roll(y, 1))
    after, changed = load_dataset_with_provenance(uri)
    assert np.array_equal(after.x, before.x)
    assert fingerprint(after.x, after.y) != fingerprint(before.x, before.y)
    assert changed.sha256 != first.sha256


def test_a_download_over_the_byte_limit_is_refused_naming_the_uri(s3, mnist_subset):
    x, y = _digits(mnist_subset)
    uri = _put_npz(s3, "big/digits.npz", x=x, y=y)
    with pytest.raises(DataError, match="download limit") as error, \
            download(uri, max_bytes=10_000):
        pass
    assert error.value.source == uri


def test_a_folder_listing_more_than_the_byte_limit_is_refused_before_downloading(s3):
    for i in range(3):
        s3.put_object(Bucket=BUCKET, Key=f"large/{i}.png", Body=b"x" * 400)
    with pytest.raises(DataError, match="lists 1200 bytes"), \
            download(f"s3://{BUCKET}/large", max_bytes=1000):
        pass


def test_a_folder_with_too_many_files_is_refused_before_downloading(s3):
    for i in range(3):
        s3.put_object(Bucket=BUCKET, Key=f"many/{i}.png", Body=b"x")
    with pytest.raises(DataError, match="over the limit of 2"), \
            download(f"s3://{BUCKET}/many", max_files=2):
        pass


def test_a_corrupt_object_is_reported_by_its_uri_not_a_scratch_path(s3):
    s3.put_object(Bucket=BUCKET, Key="bad/digits.npz", Body=b"PK\x03\x04 not a zip")
    with pytest.raises(DataError) as error:
        load_dataset(f"s3://{BUCKET}/bad/digits.npz")
    assert str(error.value).startswith(f"s3://{BUCKET}/bad/digits.npz: ")
    assert "dec-download" not in str(error.value)


@pytest.mark.parametrize("uri, problem", [
    (f"s3://{BUCKET}/no/such/digits.npz", "no such object or folder"),
    ("s3://no-such-bucket-here/digits.npz", "no such object or folder"),
    (f"s3://{BUCKET}/empty-prefix/", "no such object or folder"),
])
def test_nothing_at_the_uri_is_one_error_naming_it(s3, uri, problem):
    with pytest.raises(DataError, match=problem) as error:
        load_dataset(uri)
    assert error.value.source == uri


def test_only_object_store_and_https_uris_are_remote():
    assert is_remote("s3://b/k.npz") and is_remote("gs://b/k") and is_remote("HTTPS://h/x.npz")
    assert not is_remote("mnist") and not is_remote("/data/x.npz")
    assert not is_remote("ftp://h/x.npz") and not is_remote("file:///data/x.npz")
