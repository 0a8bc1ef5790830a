"""The registry on its own: aliases without a gate, and the champion a warm start finds."""

from __future__ import annotations

import os

import mlflow
import pytest
from mlflow import MlflowClient

from dec_lib.errors import DecError
from dec_lib.mlops import registry, tracking

NAME = "registry-test"


@pytest.fixture(scope="module")
def registered(tiny_model, tmp_path_factory):
    """Two versions of ``NAME``, logged without a gate by two runs; the first's data is
    ``fingerprint-1``."""
    model_dir, _ = tiny_model
    root = tmp_path_factory.mktemp("registry")
    uri = tracking.sqlite_uri(root)
    experiment = MlflowClient(uri).create_experiment(
        NAME, artifact_location=tracking.artifact_root_for(uri))
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    registrations = []
    try:
        for i in (1, 2):
            with mlflow.start_run(experiment_id=experiment) as run:
                registrations.append(registry.log_and_register(
                    model_dir / "dec.keras", mapping={0: 1}, image_shape=(28, 28),
                    model_name=NAME, metrics={"acc": 0.5}, run_id=run.info.run_id,
                    work_dir=root / f"register-{i}",
                    tags={registry.DATA_FINGERPRINT_TAG: f"fingerprint-{i}"}))
        yield registrations
    finally:
        mlflow.set_tracking_uri(previous)


def test_without_a_gate_the_first_version_is_champion_and_later_ones_challengers(registered):
    first, second = registered
    assert (first.version, first.alias) == ("1", registry.CHAMPION)
    assert (second.version, second.alias) == ("2", registry.CHALLENGER)
    assert first.model_uri == f"models:/{NAME}@champion"
    champion = registry.champion_version(NAME)
    assert str(champion.version) == "1"
    assert champion.tags["mlflow_run_id"] == first.run_id and champion.tags["acc"] == "0.5000"


@pytest.mark.parametrize(("fingerprint", "unchanged"), [("fingerprint-1", True),
                                                        ("fingerprint-2", False)])
def test_a_warm_start_fetches_the_champion_and_knows_whether_its_data_changed(
        registered, tmp_path, fingerprint, unchanged):
    start = registry.warm_start_from_champion(NAME, fingerprint, tmp_path)
    assert start.version == "1" and start.data_unchanged is unchanged
    assert start.model_file.suffix == ".keras" and start.model_file.is_relative_to(tmp_path)


def test_without_a_champion_there_is_no_warm_start(registered, tmp_path):
    assert registry.champion_version("no-such-model") is None
    assert registry.warm_start_from_champion("no-such-model", "x", tmp_path) is None


def test_a_warm_start_without_a_model_name_is_refused_naming_the_setting(tmp_path):
    with pytest.raises(DecError, match=r"registry\.warm_start"):
        registry.warm_start_from_champion("", "x", tmp_path)
