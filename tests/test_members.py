"""Several members per run: the compiled DAG, the settings, MLflow's run keys, and the real
DAG under kfp.local combining the members around the one the others agree with."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from kfp import compiler

from dec_lib.config import preset
from dec_lib.errors import ConfigError
from dec_lib.mlops import tracking
from dec_lib.steps.choosing import member_seed
from pipelines.backends import BACKENDS
from pipelines.dag import Placement, build_pipeline, pipeline_arguments

MEMBER_TASKS = {"pretrain", "init-clusters", "dec-train"}


@pytest.fixture(scope="module")
def compiled_members(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "members.yaml"
    compiler.Compiler().compile(build_pipeline(preset("best", ["members=3"]), Placement()),
                                str(path))
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform


def _loop(spec):
    (name,) = [t for t in spec["root"]["dag"]["tasks"] if t.startswith("for-loop")]
    return name, spec["components"][f"comp-{name}"]["dag"]["tasks"]


def test_members_train_inside_a_loop_between_plan_and_choice(compiled_members):
    spec, _ = compiled_members
    root = spec["root"]["dag"]["tasks"]
    loop, inside = _loop(spec)
    assert set(root) == {"ingest", "plan-members", loop, "choose-member", "evaluate", "register"}
    assert set(inside) == MEMBER_TASKS
    assert root[loop]["parameterIterator"]["items"] == {
        "inputParameter": "pipelinechannel--plan-members-Output"}
    # The choice takes every member's model and autoencoder; evaluation and registration take
    # the chosen ones, never a member's directly.
    artifacts = root["choose-member"]["inputs"]["artifacts"]
    assert {artifacts[k]["taskOutputArtifact"]["producerTask"] for k in ("models", "autoencoders")
            } == {loop}
    for task in ("evaluate", "register"):
        producer = root[task]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
        assert producer == {"outputArtifactKey": "model", "producerTask": "choose-member"}
    # Each member's steps get the member's seed and run key, not the run's.
    seed_input = inside["init-clusters"]["inputs"]["parameters"]["seed"]
    key_input = inside["init-clusters"]["inputs"]["parameters"]["run_key"]
    assert seed_input["parameterExpressionSelector"] == 'parseJson(string_value)["seed"]'
    assert key_input["parameterExpressionSelector"] == 'parseJson(string_value)["run_key"]'


def test_members_have_no_parallelism_limit_locally_or_on_a_cluster(compiled_members, tmp_path):
    # Measured: two members side by side on 2 cores pretrained at 1.21x the rate of one alone
    # (BENCHMARKS.md), so kfp.local keeps its own cap of two at a time.
    spec, _ = compiled_members
    loop, _ = _loop(spec)
    assert "iteratorPolicy" not in spec["root"]["dag"]["tasks"][loop]
    path = tmp_path / "local.yaml"
    compiler.Compiler().compile(build_pipeline(preset("quick", ["members=3"])), str(path))
    local = next(yaml.safe_load_all(path.read_text()))
    assert "iteratorPolicy" not in local["root"]["dag"]["tasks"][loop]


def test_member_pretraining_still_goes_to_a_gpu_node(tmp_path):
    path = tmp_path / "members.yaml"
    compiler.Compiler().compile(build_pipeline(preset("best", ["members=3"]), Placement()),
                                str(path))
    spec, platform = yaml.safe_load_all(path.read_text())
    resources = spec["deploymentSpec"]["executors"]["exec-pretrain"]["container"]["resources"]
    assert resources["accelerator"]["resourceCount"] == "1"
    tolerations = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][
        "exec-pretrain"]["tolerations"]
    assert tolerations[0]["key"] == "nvidia.com/gpu"


def test_the_member_count_is_a_run_parameter_only_where_the_dag_has_members(compiled_members,
                                                                            tmp_path):
    spec, _ = compiled_members
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["members"]["defaultValue"] == 3
    assert parameters["combine"]["defaultValue"] == "mean"
    # The choice step takes the run's combine parameter, so a submission can change it.
    for step in ("plan-members", "choose-member"):  # checked before training, applied after
        given = spec["root"]["dag"]["tasks"][step]["inputs"]["parameters"]["combine"]
        assert given == {"componentInputParameter": "combine"}
    arguments = pipeline_arguments(preset("best", ["members=3", "combine=medoid"]))
    assert arguments["members"] == 3 and arguments["combine"] == "medoid"
    assert not {"members", "combine"} & set(pipeline_arguments(preset("best", ["members=1"])))
    path = tmp_path / "one.yaml"
    compiler.Compiler().compile(build_pipeline(preset("best", ["members=1"]), Placement()),
                                str(path))
    one = next(yaml.safe_load_all(path.read_text()))
    assert not {"members", "combine"} & set(one["root"]["inputDefinitions"]["parameters"])


@pytest.mark.parametrize("version", ["2.5", "2.2"])
def test_backends_that_cannot_collect_artifacts_refuse_members(version):
    with pytest.raises(ConfigError, match=r"members.*2\.14 and later.*set members=1"):
        build_pipeline(preset("best", ["members=3"]), Placement(), backend=BACKENDS[version])
    with pytest.raises(ConfigError, match="set members=1"):  # best has three
        build_pipeline(preset("best"), Placement(), backend=BACKENDS[version])
    build_pipeline(preset("best", ["members=1"]), Placement(), backend=BACKENDS[version])


@pytest.mark.parametrize("assignments, message", [
    (["members=0"], r"members.*\[1, 9\]"),
    (["members=10"], r"members.*\[1, 9\]"),
    (["members=3", "registry.warm_start=true"], "cannot warm-start"),
    (["members=3", "combine=median"], r"combine.*must be .mean. or .medoid."),
])
def test_impossible_member_settings_are_refused(assignments, message):
    with pytest.raises(ConfigError, match=message):
        preset("best", assignments)


def test_member_run_keys_name_their_parent():
    key = tracking.member_run_key("3f2a-run", 2)
    assert key == "3f2a-run/member-2"
    assert tracking.parent_run_key(key) == "3f2a-run"
    for plain in ("3f2a-run", "a/member-", "a/member-x", "/member-1"):
        assert tracking.parent_run_key(plain) is None


def test_member_seeds_start_at_the_runs_and_stay_in_range():
    assert [member_seed(7, i) for i in range(3)] == [7, 1007, 2007]
    assert member_seed(2**32 - 1, 1) == 999


# ------------------------------------------------------------------- the real DAG, locally

CLI = [sys.executable, "-m", "pipelines.cli"]
SMALL = ["--preset", "quick", "--set", "data.n_samples=600", "--set", "pretrain.epochs=20",
         "--set", "dec.maxiter=60", "--set", "dec.update_interval=20", "--set", "init.n_init=2",
         "--set", "members=3"]


@pytest.fixture(scope="module")
def members_run(tmp_path_factory):
    import os

    work = tmp_path_factory.mktemp("members")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run([*CLI, "run", *SMALL, "--work-dir", str(work), "--summary",
                             str(work / "summary.json")], capture_output=True, text=True,
                            timeout=900, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, json.loads((work / "summary.json").read_text())


@pytest.mark.e2e
def test_the_pipeline_run_records_the_choice_and_each_member_nests_in_it(members_run):
    from mlflow import MlflowClient

    _, summary = members_run
    client = MlflowClient(summary["tracking_uri"])
    parent = client.get_run(summary["mlflow_run_id"])
    assert parent.info.status == "FINISHED"
    params, metrics = parent.data.params, parent.data.metrics
    assert params["members"] == "3" and params["members.seeds"] == "0,1000,2000"
    assert params["combine"] == "mean"
    agreement = [metrics[f"members.agreement.{i}"] for i in range(3)]
    chosen = int(metrics["members.chosen"])
    assert chosen == int(np.argmax(agreement))
    assert params["members.chosen_seed"] == str(1000 * chosen)
    assert {"plan_members", "choose_member", "pretrain", "dec_train"} <= set(
        summary["phase_seconds"])
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(r.data.params["seed"] for r in children) == ["0", "1000", "2000"]
    for child in children:
        assert child.info.status == "FINISHED"
        for step in ("pretrain", "init_clusters", "dec_train"):
            assert child.data.tags[f"step.{step}"] == "done"
    version = client.get_model_version_by_alias("dec-mnist", "champion")
    assert version.tags["mlflow_run_id"] == parent.info.run_id


def _members_outputs(work: Path) -> tuple[Path, dict[int, Path]]:
    (run_dir,) = [p for p in (work / "kfp-outputs").iterdir() if p.is_dir()]
    members = {int(p.name.rsplit("-", 1)[1]): p / "dec-train" / "model"
               for p in run_dir.glob("for-loop-*-iteration-*")}
    assert sorted(members) == [0, 1, 2]
    return run_dir, members


@pytest.mark.e2e
def test_the_members_mean_is_the_model_evaluated_registered_and_served(members_run):
    """``combine=mean`` (the default): one model whose q is the mean of the three members',
    numbered as the chosen member; evaluation scores it and the champion serves it."""
    import mlflow
    from mlflow import MlflowClient

    from dec_lib.data.datasets import read_dataset
    from dec_lib.model.agreement import aligned_order
    from dec_lib.model.dec_model import cluster_labels, clustering_layer, soft_assignments
    from dec_lib.model.metrics import cluster_accuracy
    from dec_lib.model.saving import load_model

    work, summary = members_run
    run_dir, members = _members_outputs(work)
    client = MlflowClient(summary["tracking_uri"])
    run = client.get_run(summary["mlflow_run_id"])
    chosen = int(run.data.metrics["members.chosen"])
    dataset = read_dataset(str(run_dir / "ingest" / "dataset"))
    soft = [soft_assignments(load_model(members[i] / "dec.keras"), dataset.x) for i in range(3)]
    labels = [cluster_labels(q) for q in soft]
    expected = np.mean([q[:, aligned_order(labels[chosen], lab, q.shape[1])]
                        for q, lab in zip(soft, labels, strict=True)], axis=0)
    handed_on = load_model(run_dir / "choose-member" / "model" / "dec.keras")
    assert clustering_layer(handed_on).members == 3
    q = soft_assignments(handed_on, dataset.x)
    np.testing.assert_allclose(q, expected, atol=1e-5)
    assert summary["acc"] == pytest.approx(cluster_accuracy(dataset.y, cluster_labels(q)),
                                           abs=1e-9)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(summary["tracking_uri"])
    try:
        served = mlflow.pyfunc.load_model("models:/dec-mnist@champion").predict(dataset.x[:64])
    finally:
        mlflow.set_tracking_uri(previous)
    np.testing.assert_array_equal(served["cluster"].to_numpy(), cluster_labels(q[:64]))


@pytest.mark.e2e
def test_combine_medoid_hands_on_the_chosen_members_own_model(members_run, tmp_path):
    from mlflow import MlflowClient

    from dec_lib.steps import TrackingContext, choose_member

    work, summary = members_run
    run_dir, members = _members_outputs(work)
    chosen = int(MlflowClient(summary["tracking_uri"]).get_run(
        summary["mlflow_run_id"]).data.metrics["members.chosen"])
    plan = [{"index": i, "seed": member_seed(0, i), "run_key": f"k/member-{i}"}
            for i in range(3)]
    meta = choose_member(
        str(run_dir / "ingest" / "dataset"), plan,
        [(str(members[i]), {"seed": member_seed(0, i)}) for i in range(3)],
        [(str(members[i].parent.parent / "pretrain" / "model"), {"seed": member_seed(0, i)})
         for i in range(3)],
        str(tmp_path / "model"), str(tmp_path / "autoencoder"),
        TrackingContext("k", f"sqlite:///{tmp_path}/mlflow.db"), combine="medoid")
    assert meta["member"] == chosen and meta["combine"] == "medoid"
    handed_on = (tmp_path / "model" / "dec.keras").read_bytes()
    assert handed_on == (members[chosen] / "dec.keras").read_bytes()
    assert all(handed_on != (m / "dec.keras").read_bytes()
               for i, m in members.items() if i != chosen)


def test_a_choice_without_a_model_for_every_planned_member_fails_in_one_line(capfd):
    from dec_lib.steps import TrackingContext, choose_member

    plan = [{"index": 0, "seed": 0, "run_key": "k/member-0"},
            {"index": 1, "seed": 1000, "run_key": "k/member-1"}]
    with pytest.raises(SystemExit) as stopped:
        choose_member("unused", plan, [("m0", {"seed": 0.0})], [("a0", {"seed": 0.0})],
                      "out-model", "out-ae", TrackingContext("k"))
    assert stopped.value.code == 1
    captured = capfd.readouterr()
    errors = [line for line in (captured.out + captured.err).splitlines()
              if '"dec_event": "error"' in line]
    assert len(errors) == 1
    assert "choose_member: expected a model and an autoencoder for each of the members seeded " \
        "[0, 1000]; got models seeded [0]" in errors[0]
    assert not Path("out-model").exists()


@pytest.mark.parametrize("members, combine, message", [
    (1, "mean", "1 member in a pipeline compiled for several: compile the pipeline with "
     "members=1"),
    (12, "mean", r"setting 'members': must be in \[1, 9\]"),
    (3, "median", r"setting 'combine': must be 'mean' or 'medoid'"),
])
def test_member_settings_changed_at_submission_are_checked_before_anything_trains(
        members, combine, message, capfd, tmp_path):
    from dec_lib.steps import TrackingContext, plan_members

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(SystemExit) as stopped:
        plan_members(0, members, TrackingContext("a-run", uri), combine=combine)
    assert stopped.value.code == 1
    captured = capfd.readouterr()
    errors = [line for line in (captured.out + captured.err).splitlines()
              if '"dec_event": "error"' in line]
    assert len(errors) == 1 and re.search(message, errors[0])
    assert not (tmp_path / "mlflow.db").exists()  # no run recorded
