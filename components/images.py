"""The container images the components run in, tagged with the package version.

The pipeline compiler replaces these per task (``--image``/``--gpu-image``); the defaults name
the images that ``make images`` builds.
"""

from importlib import metadata

REGISTRY = "ghcr.io/example"
VERSION = metadata.version("dec-pipeline")
CPU_IMAGE = f"{REGISTRY}/dec-pipeline:{VERSION}"
GPU_IMAGE = f"{REGISTRY}/dec-pipeline-gpu:{VERSION}"
