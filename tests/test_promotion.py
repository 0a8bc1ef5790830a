"""The champion gate and warm-started retraining, against a real SQLite MLflow registry."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow import MlflowClient

from dec_lib import steps
from dec_lib.config import AutoencoderConfig
from dec_lib.data.datasets import save_dataset
from dec_lib.errors import ConfigError
from dec_lib.mlops.promotion import Score, criterion_for, decide
from dec_lib.model.autoencoder import build_autoencoder, embed, encoder_of
from dec_lib.model.dec_model import build_dec_model
from dec_lib.model.saving import save_model
from dec_lib.runtime.seeding import seed_everything

TINY = AutoencoderConfig(hidden_dims=[64, 64, 128], embedding_dim=10)

# --- the decision rule --------------------------------------------------------------------------


def test_the_first_version_is_promoted():
    decision = decide(Score(0.3, 0), None, criterion="acc", tolerance=0.01)
    assert decision.promote and decision.champion is None and "no champion" in decision.reason


@pytest.mark.parametrize(("candidate", "champion", "promote"), [
    (0.95, 0.90, True),    # better
    (0.895, 0.90, True),   # worse, but within the tolerance
    (0.88, 0.90, False),   # worse by more than the tolerance
])
def test_the_tolerance_decides(candidate, champion, promote):
    decision = decide(Score(candidate, 0), Score(champion, 0), criterion="acc", tolerance=0.01,
                      champion_version="3")
    assert decision.promote is promote
    assert decision.metrics()["gate.champion"] == champion
    assert decision.champion_version == "3"


def test_without_labels_a_model_with_more_empty_clusters_is_never_promoted():
    decision = decide(Score(0.9, 2), Score(0.5, 0), criterion="silhouette", tolerance=0.0)
    assert not decision.promote and "empty clusters" in decision.reason


@pytest.mark.parametrize(("champion_today", "promote"), [
    (0.88, True),   # the champion holds up on today's data: the usual comparison decides
    (0.40, False),  # it fell far below its own registered score: the data went bad
])
def test_data_that_went_bad_holds_the_new_version_for_review(champion_today, promote):
    # Noise or shuffled labels pull both scores down together: the candidate looks as good.
    decision = decide(Score(champion_today, 0), Score(champion_today, 0), criterion="acc",
                      tolerance=0.005, champion_registered=0.90, max_champion_drop=0.1)
    assert decision.promote is promote
    assert decision.metrics()["gate.champion_registered"] == 0.90
    if not promote:
        assert "the data changed for the worse" in decision.reason


def test_criterion_follows_the_labels():
    assert criterion_for("auto", True) == "acc"
    assert criterion_for("auto", False) == "silhouette"
    assert criterion_for("silhouette", True) == "silhouette"
    with pytest.raises(ConfigError, match=r"registry\.promotion_criterion"):
        criterion_for("acc", False)


# --- the register step against a real registry --------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory, mnist_subset):
    root = tmp_path_factory.mktemp("gate")
    dataset = _first(mnist_subset, 600)
    save_dataset(dataset, root / "data.npz")
    seed_everything(0)
    autoencoder = build_autoencoder(dataset.n_features, TINY)
    save_model(autoencoder, root / "autoencoder" / "autoencoder.keras")
    embedding = embed(encoder_of(autoencoder), dataset.x)
    # A sensible model: centres on ten images of ten different digits.
    firsts = [int(np.flatnonzero(dataset.y == digit)[0]) for digit in range(10)]
    good = build_dec_model(encoder_of(autoencoder), embedding[firsts], alpha=1.0)
    # A poor one: nine centres far from every image, so nearly all land in one cluster.
    centres = np.vstack([embedding[firsts[0]], embedding[firsts[0]] + 1e3 * np.eye(10)[:9]])
    bad = build_dec_model(encoder_of(autoencoder), centres, alpha=1.0)
    models = {}
    for name, model in (("good", good), ("bad", bad)):
        save_model(model, root / name / "dec.keras")
        models[name] = str(root / name)
    return {"root": root, "data": str(root / "data.npz"), "models": models,
            "uri": f"sqlite:///{root / 'mlflow.db'}"}


def _first(dataset, n):
    from dec_lib.data.datasets import Dataset

    return Dataset(x=dataset.x[:n], y=dataset.y[:n], image_shape=dataset.image_shape,
                   source=dataset.source)


def _register(store, name, run_key, **kwargs):
    ctx = steps.TrackingContext(run_key, store["uri"], "gate-test")
    report = store["root"] / f"{run_key}-report.json"
    steps.evaluate(store["data"], store["models"][name], str(report), ctx)
    return steps.register(store["models"][name], str(report), "digits",
                          str(store["root"] / run_key), ctx, dataset_path=store["data"],
                          registry={"promotion_tolerance": 0.01}, **kwargs)


def _champion(store) -> str:
    return str(MlflowClient(store["uri"]).get_model_version_by_alias("digits",
                                                                     "champion").version)


def test_the_gate_promotes_better_and_keeps_worse_as_challenger(store):
    first = _register(store, "good", "run-1")
    assert first["decision"] == "promoted" and first["alias"] == "champion"
    assert first["reason"] == "no champion yet"

    worse = _register(store, "bad", "run-2")
    assert worse["decision"] == "challenger" and worse["alias"] == "challenger"
    assert worse["candidate_score"] < worse["champion_score"] - 0.01
    assert worse["champion_version"] == first["model_version"]
    assert _champion(store) == first["model_version"]  # the champion did not move

    again = _register(store, "good", "run-3")  # as good as the champion: promoted
    assert again["decision"] == "promoted"
    assert again["candidate_score"] == pytest.approx(again["champion_score"])
    assert _champion(store) == again["model_version"]

    client = MlflowClient(store["uri"])
    versions = client.search_model_versions("name='digits'")
    assert len(versions) == 3  # every trained model is kept, whatever the gate said
    run = client.get_run(worse["mlflow_run_id"])
    assert run.data.tags["gate.decision"] == "challenger"
    assert run.data.tags["gate.criterion"] == "acc"
    assert run.data.metrics["gate.promoted"] == 0.0
    assert "gate.champion" in run.data.metrics


def test_warm_start_hands_on_the_champion_and_unchanged_data_trains_nothing(store, tmp_path):
    _register(store, "good", "run-warm-0")  # make sure a champion trained on this data exists
    champion = _champion(store)
    ctx = steps.TrackingContext("run-warm", store["uri"], "gate-test")
    meta = steps.pretrain(store["data"], {"hidden_dims": [64, 64, 128]}, {"epochs": 1}, 0,
                          str(tmp_path / "ae"), ctx, registry={"warm_start": True},
                          model_name="digits")
    assert meta["warm_start"] and meta["data_unchanged"]
    assert meta["champion_version"] == champion

    init = steps.init_clusters(store["data"], str(tmp_path / "ae"), {}, {}, 0,
                             str(tmp_path / "init.npz"), ctx)
    assert init["n_clusters"] == 10
    trained = steps.dec_train(store["data"], str(tmp_path / "ae"), str(tmp_path / "init.npz"),
                              {"maxiter": 50}, 0, str(tmp_path / "dec"), ctx,
                              data_unchanged=True)
    assert trained["iterations"] == 0

    report = tmp_path / "report.json"
    steps.evaluate(store["data"], str(tmp_path / "dec"), str(report), ctx)
    before = len(MlflowClient(store["uri"]).search_model_versions("name='digits'"))
    result = steps.register(str(tmp_path / "dec"), str(report), "digits", str(tmp_path / "reg"),
                            ctx, dataset_path=store["data"], data_unchanged=True)
    assert result["decision"] == "skipped" and result["model_version"] == champion
    assert len(MlflowClient(store["uri"]).search_model_versions("name='digits'")) == before


def test_warm_start_on_changed_data_continues_from_the_champion(store, tmp_path, mnist_subset):
    other = _first(mnist_subset, 700)
    save_dataset(other, tmp_path / "new.npz")
    ctx = steps.TrackingContext("run-drift", store["uri"], "gate-test")
    meta = steps.pretrain(str(tmp_path / "new.npz"), {"hidden_dims": [64, 64, 128]},
                          {"epochs": 1}, 0, str(tmp_path / "ae"), ctx,
                          registry={"warm_start": True}, model_name="digits")
    assert meta["warm_start"] and not meta["data_unchanged"]
    steps.init_clusters(str(tmp_path / "new.npz"), str(tmp_path / "ae"), {}, {}, 0,
                      str(tmp_path / "init.npz"), ctx)
    centres, labels = steps.read_init(str(tmp_path / "init.npz"))
    assert centres.shape == (10, 10) and len(labels) == 700
    trained = steps.dec_train(str(tmp_path / "new.npz"), str(tmp_path / "ae"),
                              str(tmp_path / "init.npz"), {"maxiter": 30, "tol": 0.0}, 0,
                              str(tmp_path / "dec"), ctx)
    assert trained["iterations"] == 30


def test_warm_start_without_a_champion_pretrains_from_scratch(store, tmp_path):
    ctx = steps.TrackingContext("run-cold", store["uri"], "gate-test")
    meta = steps.pretrain(store["data"], {"hidden_dims": [64, 64, 128]},
                          {"epochs": 1, "checkpoint_every": 0}, 0, str(tmp_path / "ae"), ctx,
                          registry={"warm_start": True}, model_name="no-such-model")
    assert meta["epochs"] == 1 and "warm_start" not in meta


def test_a_retried_register_step_does_not_register_twice(store):
    client = MlflowClient(store["uri"])
    before = len(client.search_model_versions("name='digits'"))
    first = _register(store, "bad", "run-retried")
    again = _register(store, "bad", "run-retried")  # the same pipeline run, step rerun
    assert again["model_version"] == first["model_version"]
    assert again["alias"] == first["alias"]
    assert len(client.search_model_versions("name='digits'")) == before + 1


@pytest.mark.parametrize(("tags", "expected"), [({"acc": "0.9123"}, 0.9123), ({}, None),
                                                ({"acc": "n/a"}, None), (None, None)])
def test_the_champion_s_registered_score_is_read_from_its_tags(tags, expected):
    from types import SimpleNamespace

    from dec_lib.mlops.champion_gate import registered_score

    assert registered_score(SimpleNamespace(tags=tags), "acc") == expected
    assert registered_score(None, "acc") is None


def test_the_gate_scores_by_exactly_the_criteria_the_setting_allows():
    from dec_lib.config import PROMOTION_CRITERIA
    from dec_lib.mlops.promotion import SCORERS, criterion_for

    assert set(SCORERS) | {"auto"} == set(PROMOTION_CRITERIA)
    assert {criterion_for("auto", True), criterion_for("auto", False)} == set(SCORERS)
