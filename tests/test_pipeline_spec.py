"""The compiled KFP package: what a cluster will run."""

import pytest
import yaml

from dec_lib.config import preset
from pipelines.cli import main
from pipelines.dag import RESOURCES, Placement, build_pipeline, pipeline_arguments

STEPS = ["ingest", "pretrain", "kmeans-init", "dec-train", "evaluate", "register"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "dec.yaml"
    rc = main(["compile", "--output", str(path), "--image", "registry.example/dec:1.2",
               "--gpu-image", "registry.example/dec-gpu:1.2"])
    assert rc == 0
    docs = list(yaml.safe_load_all(path.read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})


def _executor(spec, task):
    label = spec["root"]["dag"]["tasks"][task]["componentRef"]["name"].replace("comp-", "exec-")
    return spec["deploymentSpec"]["executors"][label]["container"]


def test_six_tasks_in_dependency_order(compiled):
    spec, _ = compiled
    tasks = spec["root"]["dag"]["tasks"]
    assert sorted(tasks) == sorted(STEPS)
    deps = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    assert deps["ingest"] == set()
    assert deps["pretrain"] == {"ingest"}
    assert deps["kmeans-init"] == {"ingest", "pretrain"}
    assert deps["dec-train"] == {"ingest", "pretrain", "kmeans-init"}
    assert deps["evaluate"] == {"ingest", "dec-train"}
    assert deps["register"] == {"dec-train", "evaluate"}


def test_artifacts_flow_between_steps(compiled):
    spec, _ = compiled
    tasks = spec["root"]["dag"]["tasks"]

    def source(task, name):
        ref = tasks[task]["inputs"]["artifacts"][name]["taskOutputArtifact"]
        return ref["producerTask"], ref["outputArtifactKey"]

    assert source("pretrain", "dataset") == ("ingest", "dataset")
    assert source("kmeans-init", "autoencoder") == ("pretrain", "model")
    assert source("dec-train", "centres") == ("kmeans-init", "centres")
    assert source("evaluate", "model") == ("dec-train", "model")
    assert source("register", "report") == ("evaluate", "report")
    types = {name: comp["outputDefinitions"]["artifacts"]
             for name, comp in spec["components"].items() if "outputDefinitions" in comp}
    assert types["comp-ingest"]["dataset"]["artifactType"]["schemaTitle"] == "system.Dataset"
    assert types["comp-pretrain"]["model"]["artifactType"]["schemaTitle"] == "system.Model"
    evaluate = types["comp-evaluate"]
    assert evaluate["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert (evaluate["confusion"]["artifactType"]["schemaTitle"]
            == "system.ClassificationMetrics")


def test_pretraining_goes_to_a_gpu_node(compiled):
    spec, platform = compiled
    container = _executor(spec, "pretrain")
    assert container["image"] == "registry.example/dec-gpu:1.2"
    assert container["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert container["resources"]["accelerator"]["resourceCount"] == "1"
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    tolerations = k8s[spec["root"]["dag"]["tasks"]["pretrain"]["componentRef"]["name"]
                      .replace("comp-", "exec-")]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations
    for task in STEPS:
        if task != "pretrain":
            assert "accelerator" not in _executor(spec, task).get("resources", {})
            assert _executor(spec, task)["image"] == "registry.example/dec:1.2"


def test_every_step_has_requests_and_limits(compiled):
    spec, _ = compiled
    for task in STEPS:
        resources = _executor(spec, task)["resources"]
        wanted = RESOURCES[task.replace("-", "_")]
        for key in ("cpuRequest", "cpuLimit", "memoryRequest", "memoryLimit"):
            assert key in resources, (task, key)
        assert float(resources["cpuLimit"]) >= float(resources["cpuRequest"])
        assert float(resources["cpuLimit"]) == float(wanted.cpu_limit)


def test_components_do_not_pip_install_at_start(compiled):
    spec, _ = compiled
    for task in STEPS:
        assert "pip install" not in " ".join(_executor(spec, task)["command"])


def test_parameters_default_to_the_configuration(tmp_path):
    config = preset("quick").with_overrides(["pretrain.epochs=3", "seed=7"])
    path = tmp_path / "quick.yaml"
    from kfp import compiler

    compiler.Compiler().compile(build_pipeline(config, Placement()), str(path))
    params = next(yaml.safe_load_all(path.read_text()))["root"]["inputDefinitions"]["parameters"]
    assert params["seed"]["defaultValue"] == 7
    assert params["pretrain_config"]["defaultValue"]["epochs"] == 3
    assert params["data"]["defaultValue"]["n_samples"] == 2000
    # Pipeline arguments carry the same values for a run or a submission.
    args = pipeline_arguments(config)
    assert args["pretrain_config"]["epochs"] == 3 and args["seed"] == 7
    assert "n_samples" not in pipeline_arguments(preset("default"))["data"]  # None is absent
