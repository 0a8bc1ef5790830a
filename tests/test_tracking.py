"""One MLflow run per pipeline run, whatever characters the run's key holds."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from dec_lib.errors import ConfigError
from dec_lib.mlops import tracking


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return uri, tracking.configure(uri, "keys")


@pytest.mark.parametrize("key", ["5f0c3e1a-8a4b-4c57-9e3a-0d1f2b3c4d5e", "it's mine",
                                 'say "hi"', """both ' and " in one"""])
def test_a_run_key_finds_its_own_run_and_no_other(store, key):
    _, experiment = store
    mine = tracking.find_or_create_run(key, experiment)
    other = tracking.find_or_create_run(key + " (2)", experiment)
    assert tracking.find_or_create_run(key, experiment) == mine != other
    assert MlflowClient().get_run(mine).data.tags[tracking.RUN_KEY_TAG] == key


def test_a_key_the_backend_left_unresolved_is_refused_naming_the_fix(store):
    uri, _ = store
    with pytest.raises(ConfigError, match=r"--kfp-backend 2\.2"), \
            tracking.step_run("{{$.pipeline_job_uuid}}", "kmeans_init", tracking_uri=uri):
        pass


def test_an_empty_key_is_refused_instead_of_sharing_one_run(store):
    uri, _ = store
    with pytest.raises(ConfigError, match="empty"), \
            tracking.step_run("", "kmeans_init", tracking_uri=uri):
        pass


@pytest.mark.parametrize("name", ["dec-mnist", "Bob's digits", 'the "best" digits'])
def test_a_model_name_with_a_quote_is_searchable(store, name):
    client = MlflowClient()
    client.create_registered_model(name)
    client.create_model_version(name, "file:///nowhere", tags={"mlflow_run_id": "abc"})
    found = client.search_model_versions(
        f"name={tracking.filter_literal(name, 'model_name')} and tags.mlflow_run_id='abc'")
    assert [v.name for v in found] == [name]


def test_a_name_with_both_quotes_is_refused_naming_the_setting():
    with pytest.raises(ConfigError, match="model_name"):
        tracking.filter_literal("""it's "x" """, "model_name")
