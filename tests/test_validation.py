"""The shared input checks: what they accept, how they convert, and what they refuse."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dec_lib.data.validation import check_images, check_labels, check_n_clusters
from dec_lib.errors import ConfigError, DataError

# --- check_images: accepted inputs ---------------------------------------------------------


def test_uint8_is_scaled_to_unit_interval_exactly():
    x = np.arange(256, dtype=np.uint8).reshape(1, 256)
    out = check_images(x)
    assert out.dtype == np.float32
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out[0], np.arange(256, dtype=np.float32) / np.float32(255))


@settings(max_examples=50, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 5), st.integers(1, 6), st.integers(1, 6))))
def test_uint8_round_trips_through_255(x):
    out = check_images(x)
    assert out.shape == (x.shape[0], x.shape[1] * x.shape[2])
    np.testing.assert_array_equal(np.rint(out * 255).astype(np.uint8), x.reshape(len(x), -1))


@pytest.mark.parametrize("dtype", [np.int16, np.int64, np.uint16])
def test_other_integer_dtypes_within_0_255_are_scaled(dtype):
    out = check_images(np.array([[0, 51, 255]], dtype=dtype))
    np.testing.assert_allclose(out, [[0, 0.2, 1]], rtol=1e-6)


def test_bool_images_map_to_zero_and_one():
    out = check_images(np.array([[True, False, True]]))
    np.testing.assert_array_equal(out, [[1, 0, 1]])


def test_float32_in_range_is_returned_without_copy():
    x = np.random.default_rng(0).random((4, 9), dtype=np.float32)
    assert np.shares_memory(check_images(x), x)


def test_float64_is_converted_to_float32():
    out = check_images(np.array([[0.0, 0.5, 1.0]]))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0, 0.5, 1]])


def test_rounding_noise_just_outside_unit_interval_is_clipped():
    out = check_images(np.array([[-5e-7, 0.5, 1 + 5e-7]]))
    np.testing.assert_array_equal(out, np.array([[0, 0.5, 1]], dtype=np.float32))


@pytest.mark.parametrize(
    ("shape", "flat"),
    [((3, 4), (3, 4)), ((3, 2, 5), (3, 10)), ((3, 2, 5, 1), (3, 10)), ((3, 2, 5, 3), (3, 30))],
)
def test_shapes_are_flattened_to_n_by_d(shape, flat):
    assert check_images(np.zeros(shape, dtype=np.uint8)).shape == flat


def test_array_likes_and_non_contiguous_arrays_become_c_contiguous():
    assert check_images([[0.0, 1.0], [0.5, 0.25]]).shape == (2, 2)
    fortran = np.asfortranarray(np.random.default_rng(0).random((5, 6)))
    assert check_images(fortran).flags.c_contiguous
    strided = np.zeros((6, 8, 8), dtype=np.uint8)[::2, ::2]
    out = check_images(strided)
    assert out.shape == (3, 32)
    assert out.flags.c_contiguous


# --- check_images: refused inputs ---------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "words"),
    [
        (np.array([["a", "b"]]), "dtype"),
        (np.array([[b"a"]]), "dtype"),
        (np.array([[1 + 2j]]), "dtype"),
        (np.array([[object()]], dtype=object), "dtype"),
        (np.zeros(5), "shape"),
        (np.zeros((2, 2, 2, 2, 2)), "shape"),
        (np.array(0.5), "shape"),
        (np.zeros((0, 784), dtype=np.uint8), "no images"),
        (np.zeros((0, 28, 28), dtype=np.uint8), "no images"),
        (np.zeros((3, 0)), "no pixels"),
        (np.array([[0.5, np.nan]]), "NaN"),
        (np.array([[0.5], [np.inf]]), "inf"),
        (np.array([[-np.inf, 0.1]]), "inf"),
        (np.array([[0.0, 1.5]]), "out of range"),
        (np.array([[-0.1, 0.5]]), "out of range"),
        (np.array([[0.0, 255.0]]), "uint8 0-255 or floats in [0, 1]"),
        (np.array([[0, 256]], dtype=np.int32), "out of range"),
        (np.array([[-1, 3]], dtype=np.int8), "out of range"),
    ],
)
def test_bad_images_raise_data_error_naming_the_source(x, words):
    with pytest.raises(DataError, match=r"^digits\.npz: ") as info:
        check_images(x, source="digits.npz")
    assert words in info.value.problem
    assert info.value.source == "digits.npz"


def test_ragged_input_is_a_data_error():
    with pytest.raises(DataError, match="cannot be read as an array"):
        check_images([[0.1, 0.2], [0.3]], source="ragged")


def test_nan_message_gives_the_first_bad_image():
    x = np.zeros((5, 3))
    x[3, 1] = np.nan
    x[4, 0] = np.inf
    with pytest.raises(DataError, match=r"2 image\(s\).*first at index 3"):
        check_images(x)


# --- check_labels ----------------------------------------------------------------------------


def test_labels_none_passes():
    assert check_labels(None, 10, "f") is None


@pytest.mark.parametrize(
    "y", [[1, 2, 3], np.array([1, 2, 3], np.uint8), np.array([1.0, 2.0, 3.0]), (1, 2, 3)]
)
def test_integer_valued_labels_become_int64(y):
    out = check_labels(y, 3, "f")
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [1, 2, 3])


@pytest.mark.parametrize(
    ("y", "words"),
    [
        ([1, 2, 3], "3 labels for 4 images"),
        (np.zeros((4, 1), dtype=int), "1-D"),
        ([0.0, 1.5, 2.0, 3.0], "integers"),
        ([0.0, np.nan, 2.0, 3.0], "NaN"),
        ([0.0, np.inf, 2.0, 3.0], "integers"),
        (["a", "b", "c", "d"], "dtype"),
        ([True, False, True, False], "dtype"),
    ],
)
def test_bad_labels_raise_data_error(y, words):
    with pytest.raises(DataError, match=r"^labels\.idx: ") as info:
        check_labels(y, 4, "labels.idx")
    assert words in info.value.problem


# --- check_n_clusters ------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 10, np.int64(100)])
def test_n_clusters_within_range(k):
    assert check_n_clusters(k, 100) == int(k)


@pytest.mark.parametrize("k", [0, 1, -3, 101, 2.0, True, "10", None])
def test_n_clusters_out_of_range_is_a_config_error(k):
    with pytest.raises(ConfigError) as info:
        check_n_clusters(k, 100)
    assert info.value.key == "dec.n_clusters"
