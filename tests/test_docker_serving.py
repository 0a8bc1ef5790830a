"""Checks on docker/Dockerfile.serving, the KServe runtime's image, and its lock.

Read as text and linted with hadolint, as tests/test_docker.py does for the pipeline images
(whose helpers these reuse); tests/test_mlserver_runtime.py runs the server itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_docker import (
    arg_defaults,
    copy_sources,
    dockerignore_excludes,
    dockerignore_patterns,
    parse_dockerfile,
    problems_final_user,
    problems_lock_hashes,
    problems_pip_installs,
    read_lock,
    run_hadolint,
    split_stages,
)

ROOT = Path(__file__).resolve().parents[1]
SERVING_DOCKERFILE = ROOT / "docker" / "Dockerfile.serving"
SERVING_LOCK = "requirements-serving.lock"
# The model loads with these: the serving lock must hold requirements.lock's versions.
MODEL_PACKAGES = ("mlflow", "tensorflow-cpu", "keras", "numpy", "pandas", "scikit-learn",
                  "scipy")


def serving_text() -> str:
    return SERVING_DOCKERFILE.read_text()


def pipeline_base_image() -> str:
    """docker/Dockerfile's base image (``split_stages`` reads FROM through its ARG default)."""
    return split_stages((ROOT / "docker" / "Dockerfile").read_text())[0].image


def problems_serving_base(text: str, expected: str) -> list[str]:
    first = next(i.args for i in parse_dockerfile(text) if i.keyword == "FROM").split()[0]
    if first not in ("${BASE_IMAGE}", "$BASE_IMAGE"):
        return [f"the first FROM is {first!r}, not ${{BASE_IMAGE}}"]
    default = arg_defaults(text).get("BASE_IMAGE")
    if default != expected:
        return [f"ARG BASE_IMAGE defaults to {default!r}, docker/Dockerfile uses {expected!r}"]
    return []


def test_hadolint_passes_at_warning_level():
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), f"hadolint not found at {hadolint}: install the dev extra"
    result = run_hadolint(hadolint, SERVING_DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_serving_image_runs_as_the_projects_non_root_uid():
    assert problems_final_user(serving_text()) == []


def test_the_base_is_an_arg_defaulting_to_the_pipeline_images_pinned_base():
    assert problems_serving_base(serving_text(), pipeline_base_image()) == []
    assert "@sha256:" in pipeline_base_image()


@pytest.mark.parametrize("text", [
    "FROM python:3.11-slim AS base\n",
    "ARG BASE_IMAGE=python:3.12-slim\nFROM ${BASE_IMAGE} AS base\n",
])
def test_base_check_rejects_another_base(text):
    assert problems_serving_base(text, pipeline_base_image())


def test_dependencies_come_only_from_the_hash_checked_serving_lock():
    assert problems_pip_installs(serving_text(), {SERVING_LOCK}) == []
    assert problems_lock_hashes(read_lock(ROOT / SERVING_LOCK)) == []


def test_the_serving_lock_holds_the_versions_the_model_was_saved_with():
    serving, pipeline = read_lock(ROOT / SERVING_LOCK), read_lock(ROOT / "requirements.lock")
    assert {"mlserver", "mlserver-mlflow"} <= set(serving)
    assert {p: serving[p][0] for p in MODEL_PACKAGES} == \
        {p: pipeline[p][0] for p in MODEL_PACKAGES}


def test_every_copied_path_is_in_the_build_context():
    patterns = dockerignore_patterns()
    for source in copy_sources(serving_text()):
        assert (ROOT / source).exists(), source
        assert not dockerignore_excludes(patterns, source), source
