"""Reading a folder of PNG images, the way users often keep the images they want clustered.

Files are untrusted like every other input (see `dec_lib.data.datasets`): each is decoded as PNG and
nothing else, its declared size is checked against a pixel cap before its pixels are decoded,
and the whole batch is checked against the byte cap of the other readers before it is allocated.
"""

from __future__ import annotations

import logging
import os
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dec_lib.data.datasets import MAX_DECOMPRESSED_BYTES
from dec_lib.errors import DataError

__all__ = ["MAX_IMAGE_PIXELS", "load_image_folder", "png_files", "read_png_files"]

log = logging.getLogger(__name__)

#: Largest width × height accepted for one image: Pillow's own default decompression-bomb limit
#: (about a quarter of a gigabyte of 24-bit pixels). A PNG of a few kilobytes can declare
#: billions of pixels; this refuses it from the header, before anything is decoded.
MAX_IMAGE_PIXELS = 89_478_485

# Modes Pillow converts to 8-bit grayscale ("L") without losing the 0-255 scale: bilevel,
# grayscale, palette and colour, with or without alpha (alpha is ignored). 16-bit and float
# modes would be clipped by that conversion, so they are refused instead.
_CONVERTIBLE_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA"})


def png_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The ``*.png`` files directly in ``folder``, sorted by file name (possibly none).

    Raises
    ------
    DataError
        ``folder`` does not exist or is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        problem = "not a directory" if folder.exists() else "no such directory"
        raise DataError(folder, f"{problem}; expected a folder of PNG images (*.png)")
    try:
        entries = list(folder.iterdir())
    except OSError as error:
        raise DataError(folder, f"cannot list the folder: {error}") from None
    return sorted(
        (p for p in entries if p.suffix.lower() == ".png" and p.is_file()), key=lambda p: p.name
    )


def load_image_folder(path: str | os.PathLike[str]) -> np.ndarray:
    """Read every ``*.png`` in ``path`` (sorted by name) as an N×H×W float32 array in [0, 1].

    Grayscale images are read as they are; colour (RGB, RGBA, palette) images are converted to
    grayscale with Pillow's ITU-R 601-2 luma transform, alpha ignored. All images must have the
    same size.

    Raises
    ------
    DataError
        naming the folder (missing, or no PNG files) or the file at fault (not a
        readable PNG, unsupported mode, over the pixel cap, a different size from the first).
    """
    files = png_files(path)
    if not files:
        raise DataError(path, "no PNG images (*.png) in this folder")
    return read_png_files(files)


def read_png_files(files: Sequence[str | os.PathLike[str]]) -> np.ndarray:
    """Read ``files``, in the order given, as one N×H×W float32 array in [0, 1].

    The sorted listing of `png_files` passed here keeps file names and rows in step for callers
    that report per-file results. Raises `DataError` as `load_image_folder` does.
    """
    files = [Path(f) for f in files]
    if not files:
        raise DataError("PNG images", "no files given")
    first = _read_png(files[0])
    height, width = first.shape
    total_bytes = len(files) * height * width * np.dtype(np.float32).itemsize
    if total_bytes > MAX_DECOMPRESSED_BYTES:
        raise DataError(
            files[0].parent,
            f"{len(files)} images of {width}×{height} pixels need {total_bytes} bytes, over the "
            f"{MAX_DECOMPRESSED_BYTES} byte limit; read fewer or smaller images",
        )
    pixels = np.empty((len(files), height, width), dtype=np.uint8)
    pixels[0] = first
    for i, path in enumerate(files[1:], start=1):
        image = _read_png(path)
        if image.shape != first.shape:
            raise DataError(
                path,
                f"is {image.shape[1]}×{image.shape[0]} pixels but {files[0].name} is "
                f"{width}×{height}; all images must have the same size",
            )
        pixels[i] = image
    log.info("read %d PNG images of %d×%d pixels from %s", len(files), width, height,
             files[0].parent)
    # Divide (not multiply by 1/255), exactly as check_images scales uint8 input.
    return pixels.astype(np.float32) / np.float32(255)


def _read_png(path: Path) -> np.ndarray:
    """One PNG file as an H×W uint8 grayscale array."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice its limit; any bomb is an error here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=["PNG"]) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise DataError(
                        path,
                        f"declares {width}×{height} = {width * height} pixels, over the "
                        f"{MAX_IMAGE_PIXELS} pixel limit; refused as a likely decompression bomb",
                    )
                if image.mode not in _CONVERTIBLE_MODES:
                    raise DataError(
                        path,
                        f"has image mode {image.mode!r}; expected 8-bit grayscale (L) or colour "
                        "(RGB, RGBA, palette): save it as an 8-bit PNG",
                    )
                image.load()
                gray = image if image.mode == "L" else image.convert("L")
                return np.asarray(gray, dtype=np.uint8)
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(path, "not a PNG image (unrecognised or corrupt header)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(path, f"refused as a likely decompression bomb: {error}") from None
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as error:
        # Pillow reports a broken chunk as SyntaxError and truncated data as OSError.
        raise DataError(path, f"corrupt or truncated PNG: {error}") from None
