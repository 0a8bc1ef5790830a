"""The library's version, read from the installed package's metadata.

``pyproject.toml`` holds the version; installing the package (``pip install .``, as the images
do, or ``pip install -e .``) records it in the metadata read here, so it is written only once.
"""

from importlib import metadata

DISTRIBUTION = "dec-pipeline"
"""The distribution ``pyproject.toml`` names, which holds ``dec_lib``."""

UNKNOWN = "0+unknown"
"""The version of a source tree used without installing it: a valid version, lower than any
release, that says where it comes from."""


def installed_version() -> str:
    """The installed distribution's version, or ``UNKNOWN`` when it is not installed.

    Returns
    -------
    str
        The version, as ``pyproject.toml`` gave it at install time.
    """
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return UNKNOWN
