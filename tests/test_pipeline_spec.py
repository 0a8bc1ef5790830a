"""The compiled KFP package: what a cluster will run."""

import pytest
import yaml
from kfp import dsl

from dec_lib.config import preset
from dec_lib.errors import ConfigError
from pipelines.cli import main
from pipelines.dag import (
    CHECKPOINT_MOUNT,
    DATA_MOUNT,
    DATA_SECRET_KEYS,
    MLFLOW_SECRET_KEYS,
    RESOURCES,
    Placement,
    Toleration,
    build_pipeline,
    pipeline_arguments,
)

STEPS = ["ingest", "pretrain", "init-clusters", "dec-train", "evaluate", "register"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "dec.yaml"
    rc = main(["compile", "--output", str(path), "--image", "registry.example/dec:1.2",
               "--gpu-image", "registry.example/dec-gpu:1.2"])
    assert rc == 0
    docs = list(yaml.safe_load_all(path.read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})


# Credentials in the compiling environment, which must not reach the package.
SECRET_VALUES = {"MLFLOW_TRACKING_USERNAME": "dec-robot",
                 "MLFLOW_TRACKING_PASSWORD": "pa55-w0rd-never-in-yaml",
                 "MLFLOW_TRACKING_TOKEN": "t0ken-never-in-yaml"}


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    """Compiled with every placement option, with credentials set in the environment."""
    path = tmp_path_factory.mktemp("placed") / "dec.yaml"
    with pytest.MonkeyPatch.context() as env:
        for name, value in SECRET_VALUES.items():
            env.setenv(name, value)
        rc = main(["compile", "--output", str(path), "--gpus", "2",
                   "--gpu-node-selector", "cloud.google.com/gke-accelerator=nvidia-h100-80gb",
                   "--gpu-toleration", "nvidia.com/gpu=present:NoSchedule",
                   "--gpu-toleration", "spot", "--dec-on-gpu", "--mlflow-secret", "team-mlflow",
                   "--checkpoint-pvc", "dec-checkpoints"])
    assert rc == 0
    text = path.read_text()
    docs = list(yaml.safe_load_all(text))
    return docs[0], docs[1], text


def _executor(spec, task):
    label = spec["root"]["dag"]["tasks"][task]["componentRef"]["name"].replace("comp-", "exec-")
    return spec["deploymentSpec"]["executors"][label]["container"]


def _kubernetes(spec, platform, task):
    """The task's Kubernetes settings (node selector, tolerations, secrets, volumes)."""
    label = spec["root"]["dag"]["tasks"][task]["componentRef"]["name"].replace("comp-", "exec-")
    return platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].get(label, {})


def test_six_tasks_in_dependency_order(compiled):
    spec, _ = compiled
    tasks = spec["root"]["dag"]["tasks"]
    assert sorted(tasks) == sorted(STEPS)
    deps = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    assert deps["ingest"] == set()
    assert deps["pretrain"] == {"ingest"}
    assert deps["init-clusters"] == {"ingest", "pretrain"}
    assert deps["dec-train"] == {"ingest", "pretrain", "init-clusters"}
    assert deps["evaluate"] == {"ingest", "pretrain", "dec-train"}  # pretraining's losses
    assert deps["register"] == {"ingest", "dec-train", "evaluate"}  # the gate scores on data


def test_artifacts_flow_between_steps(compiled):
    spec, _ = compiled
    tasks = spec["root"]["dag"]["tasks"]

    def source(task, name):
        ref = tasks[task]["inputs"]["artifacts"][name]["taskOutputArtifact"]
        return ref["producerTask"], ref["outputArtifactKey"]

    assert source("pretrain", "dataset") == ("ingest", "dataset")
    assert source("init-clusters", "autoencoder") == ("pretrain", "model")
    assert source("dec-train", "centres") == ("init-clusters", "centres")
    assert source("evaluate", "model") == ("dec-train", "model")
    assert source("evaluate", "autoencoder") == ("pretrain", "model")
    assert source("register", "report") == ("evaluate", "report")
    types = {name: comp["outputDefinitions"]["artifacts"]
             for name, comp in spec["components"].items() if "outputDefinitions" in comp}
    assert types["comp-ingest"]["dataset"]["artifactType"]["schemaTitle"] == "system.Dataset"
    assert types["comp-pretrain"]["model"]["artifactType"]["schemaTitle"] == "system.Model"
    evaluate = types["comp-evaluate"]
    assert evaluate["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert (evaluate["confusion"]["artifactType"]["schemaTitle"]
            == "system.ClassificationMetrics")
    assert evaluate["report_html"]["artifactType"]["schemaTitle"] == "system.HTML"
    assert evaluate["report_md"]["artifactType"]["schemaTitle"] == "system.Markdown"
    assert evaluate["figures"]["artifactType"]["schemaTitle"] == "system.Artifact"


def test_pretraining_goes_to_a_gpu_node(compiled):
    spec, platform = compiled
    container = _executor(spec, "pretrain")
    assert container["image"] == "registry.example/dec-gpu:1.2"
    assert container["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert container["resources"]["accelerator"]["resourceCount"] == "1"
    pretrain = _kubernetes(spec, platform, "pretrain")
    assert pretrain["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "nodeSelector" not in pretrain  # any node with the GPU taint, unless asked
    for task in STEPS:
        if task != "pretrain":
            assert "accelerator" not in _executor(spec, task).get("resources", {})
            assert _executor(spec, task)["image"] == "registry.example/dec:1.2"
            assert "tolerations" not in _kubernetes(spec, platform, task)


def test_by_default_no_volume_and_no_checkpoints_on_the_cluster(compiled):
    spec, platform = compiled
    assert "pvcMount" not in _kubernetes(spec, platform, "pretrain")
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["checkpoint_root"].get("defaultValue", "") == ""
    assert params["tracking_uri"].get("defaultValue", "") == ""  # from the Secret


@pytest.mark.parametrize("fixture", ["compiled", "placed"])
def test_every_step_reads_mlflow_from_an_optional_secret(fixture, request):
    spec, platform, *_ = request.getfixturevalue(fixture)
    name = "team-mlflow" if fixture == "placed" else "mlflow-credentials"
    for task in STEPS:
        (secret,) = [s for s in _kubernetes(spec, platform, task)["secretAsEnv"]
                     if s["secretName"] != "dec-data-credentials"]
        assert secret["secretName"] == name
        assert secret["secretNameParameter"]["runtimeValue"]["constant"] == name
        # kfp-kubernetes marks the Secret optional as a whole; the KFP driver (2.15 on) copies
        # it onto every key's secretKeyRef, so a missing Secret or a missing key leaves that
        # variable unset (a cluster without auth has no username or password). Older targets:
        # tests/test_backends.py.
        assert secret["optional"] is True
        assert {k["secretKey"]: k["envVar"] for k in secret["keyToEnv"]} == {
            key: key for key in MLFLOW_SECRET_KEYS}


def test_no_credential_reaches_the_package(placed):
    *_, text = placed
    assert "team-mlflow" in text
    for value in SECRET_VALUES.values():
        assert value not in text


def test_gpu_options_reach_the_gpu_steps_only(placed):
    spec, platform, _ = placed
    pretrain, dec = (_kubernetes(spec, platform, t) for t in ("pretrain", "dec-train"))
    assert _executor(spec, "pretrain")["resources"]["accelerator"]["resourceCount"] == "2"
    # DEC training's loop runs on one device: it asks for one GPU.
    assert _executor(spec, "dec-train")["resources"]["accelerator"]["resourceCount"] == "1"
    wanted = [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present",
               "effect": "NoSchedule"}, {"key": "spot", "operator": "Exists"}]
    for task in (pretrain, dec):
        assert task["nodeSelector"] == {
            "labels": {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}}
        assert task["tolerations"] == wanted  # the user's replace the default
    assert _executor(spec, "dec-train")["image"] == _executor(spec, "pretrain")["image"]
    for task in ("ingest", "init-clusters", "evaluate", "register"):
        settings = _kubernetes(spec, platform, task)
        assert "nodeSelector" not in settings and "tolerations" not in settings
        assert "accelerator" not in _executor(spec, task)["resources"]


def _env(spec, task) -> dict[str, str]:
    return {v["name"]: v["value"] for v in _executor(spec, task).get("env", [])}


def test_a_gpu_step_is_told_how_many_gpus_it_must_see(compiled, placed):
    # The step fails at once when TensorFlow sees fewer (dec_lib.runtime.devices); CPU steps
    # have none.
    for (spec, *_), gpu_steps in ((compiled, {"pretrain": "1"}),
                                  (placed, {"pretrain": "2", "dec-train": "1"})):
        for task in STEPS:
            assert _env(spec, task) == ({"DEC_GPUS": gpu_steps[task]} if task in gpu_steps
                                        else {})


def test_cpu_fallback_is_allowed_on_the_gpu_steps_when_asked(tmp_path):
    path = tmp_path / "dec.yaml"
    assert main(["compile", "--output", str(path), "--allow-cpu-fallback"]) == 0
    spec = next(yaml.safe_load_all(path.read_text()))
    assert _env(spec, "pretrain") == {"DEC_GPUS": "1", "DEC_CPU_FALLBACK": "1"}
    assert _env(spec, "dec-train") == {}


def test_the_local_runners_pipeline_never_requires_a_gpu(tmp_path):
    from kfp import compiler

    path = tmp_path / "local.yaml"
    compiler.Compiler().compile(build_pipeline(), str(path))  # no placement: kfp.local's
    spec = next(yaml.safe_load_all(path.read_text()))
    assert all(_env(spec, task) == {} for task in STEPS)


def test_a_checkpoint_volume_survives_a_retried_pretraining_pod(placed):
    spec, platform, _ = placed
    (mount,) = _kubernetes(spec, platform, "pretrain")["pvcMount"]
    assert mount["mountPath"] == CHECKPOINT_MOUNT == "/mnt/dec-checkpoints"
    assert mount["pvcNameParameter"]["runtimeValue"]["constant"] == "dec-checkpoints"
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["checkpoint_root"]["defaultValue"] == CHECKPOINT_MOUNT
    # Pretraining is the step that is retried, and it reads checkpoint_root.
    assert spec["root"]["dag"]["tasks"]["pretrain"]["retryPolicy"]["maxRetryCount"] == 2
    assert (spec["root"]["dag"]["tasks"]["pretrain"]["inputs"]["parameters"]["checkpoint_root"]
            ["componentInputParameter"] == "checkpoint_root")
    for task in STEPS:
        if task != "pretrain":
            assert "pvcMount" not in _kubernetes(spec, platform, task)


@pytest.mark.parametrize("option, value, problem", [
    ("--gpu-toleration", "nvidia.com/gpu:NoEvict", "effect 'NoEvict'"),
    ("--gpu-toleration", "nvidia.com/gpu=", "without a value"),
    ("--gpu-toleration", "nvidia.com/gpu:", "without an effect"),
    ("--gpu-toleration", "bad key", "label key"),
    ("--gpu-node-selector", "cloud.google.com/gke-accelerator", "KEY=VALUE"),
    ("--gpu-node-selector", "pool=has space", "label value"),
    ("--gpus", "0", "at least 1"),
    ("--gpus", "two", "at least 1"),
    ("--mlflow-secret", "MLflow_Creds", "resource name"),
    ("--checkpoint-pvc", "-pvc", "resource name"),
])
def test_a_bad_placement_option_is_one_error_naming_it(option, value, problem, tmp_path,
                                                        capsys):
    output = tmp_path / "dec.yaml"
    with pytest.raises(SystemExit) as exit_info:
        main(["compile", "--output", str(output), f"{option}={value}"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {option}: " in error and problem in error
    assert not output.exists()


def test_tolerations_parse_key_value_and_effect():
    assert Toleration.parse("nvidia.com/gpu") == Toleration("nvidia.com/gpu")
    assert Toleration.parse("nvidia.com/gpu").operator == "Exists"
    equal = Toleration.parse("dedicated=gpu-pool:NoExecute")
    assert (equal.key, equal.operator, equal.value, equal.effect) == (
        "dedicated", "Equal", "gpu-pool", "NoExecute")
    assert Toleration.parse("spot:PreferNoSchedule").effect == "PreferNoSchedule"


def test_placement_refuses_impossible_values():
    with pytest.raises(ConfigError, match="gpus"):
        Placement(gpus=0)
    with pytest.raises(ConfigError, match="checkpoint_pvc"):
        Placement(checkpoint_pvc="Not A Name")
    with pytest.raises(ConfigError, match="gpu_node_selector"):
        Placement(gpu_node_selector=("pool", "not valid!"))


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


def _caching(spec) -> dict[str, bool]:
    tasks = spec["root"]["dag"]["tasks"]
    return {name: bool(task.get("cachingOptions", {}).get("enableCache")) for name, task in
            tasks.items()}


def test_ingest_and_pretraining_are_cacheable_and_nothing_else(compiled):
    spec, _ = compiled
    assert _caching(spec) == {"ingest": True, "pretrain": True, "init-clusters": False,
                              "dec-train": False, "evaluate": False, "register": False}
    # A cacheable step must not take the run's unique id: it would defeat the cache.
    for task in ("ingest", "pretrain"):
        run_key = spec["root"]["dag"]["tasks"][task]["inputs"]["parameters"]["run_key"]
        assert run_key == {"runtimeValue": {"constant": ""}}
    # The run's id, not its display name: recurring runs have none (tests/test_backends.py).
    key = spec["root"]["dag"]["tasks"]["register"]["inputs"]["parameters"]["run_key"]
    assert key == {"runtimeValue": {"constant": dsl.PIPELINE_JOB_ID_PLACEHOLDER}}


@pytest.mark.parametrize(("options", "ingest", "pretrain"), [
    (["--no-cache"], False, False),
    (["--retrain"], True, False),  # a warm start reads the registry: never from a cache
])
def test_caching_follows_the_mode(tmp_path, options, ingest, pretrain):
    path = tmp_path / "dec.yaml"
    assert main(["compile", "--output", str(path), *options]) == 0
    spec = yaml.safe_load_all(path.read_text()).__next__()
    caching = _caching(spec)
    assert (caching["ingest"], caching["pretrain"]) == (ingest, pretrain)
    assert not caching["register"]
    registry = spec["root"]["inputDefinitions"]["parameters"]["registry"]["defaultValue"]
    assert registry["warm_start"] is ("--retrain" in options)


@pytest.mark.parametrize("cache", [False, True])
def test_ingest_checks_the_cluster_count_unless_that_would_defeat_the_pretraining_cache(
        tmp_path, cache):
    path = tmp_path / "dec.yaml"
    assert main(["compile", "--output", str(path), *([] if cache else ["--no-cache"]),
                 "--set", "dec.n_clusters=12"]) == 0
    spec = next(yaml.safe_load_all(path.read_text()))
    given = spec["root"]["dag"]["tasks"]["ingest"]["inputs"]["parameters"]["n_clusters"]
    if cache:  # a constant: a new count must not miss ingest's cache, and so pretraining's
        assert given == {"runtimeValue": {"constant": 0.0}}
    else:
        assert given == {"componentInputParameter": "n_clusters"}
        default = spec["root"]["inputDefinitions"]["parameters"]["n_clusters"]["defaultValue"]
        assert default == 12


# ---------------------------------------------------------------------------------------------
# Data from an object store or a volume


def test_object_store_credentials_reach_ingest_alone_from_an_optional_secret(compiled):
    spec, platform = compiled
    secrets = {s["secretName"]: s for s in _kubernetes(spec, platform, "ingest")["secretAsEnv"]}
    data = secrets["dec-data-credentials"]
    assert data["optional"] is True
    assert {k["secretKey"]: k["envVar"] for k in data["keyToEnv"]} == {
        key: key for key in DATA_SECRET_KEYS}
    assert "AWS_ENDPOINT_URL" in DATA_SECRET_KEYS  # MinIO and other S3-compatible stores
    for task in STEPS[1:]:
        names = {s["secretName"] for s in _kubernetes(spec, platform, task)["secretAsEnv"]}
        assert names == {"mlflow-credentials"}, task


def test_a_uri_dataset_is_never_served_from_the_cache(tmp_path):
    path = tmp_path / "dec.yaml"
    assert main(["compile", "--output", str(path), "--dataset", "s3://data/digits.npz"]) == 0
    spec = next(yaml.safe_load_all(path.read_text()))
    assert _caching(spec)["ingest"] is False
    run_key = spec["root"]["dag"]["tasks"]["ingest"]["inputs"]["parameters"]["run_key"]
    assert "pipeline_job_uuid" in str(run_key)  # its own run key: it logs to the run
    data = spec["root"]["inputDefinitions"]["parameters"]["data"]["defaultValue"]
    assert data["dataset"] == "s3://data/digits.npz"


def test_a_data_volume_is_mounted_on_ingest_and_the_dataset_points_inside_it(tmp_path):
    path = tmp_path / "dec.yaml"
    assert main(["compile", "--output", str(path), "--data-pvc", "team-data:digits/v2/",
                 "--data-secret", "team-s3"]) == 0
    spec, platform = list(yaml.safe_load_all(path.read_text()))[:2]
    (mount,) = _kubernetes(spec, platform, "ingest")["pvcMount"]
    assert mount["mountPath"] == DATA_MOUNT == "/mnt/dec-data"
    assert mount["pvcNameParameter"]["runtimeValue"]["constant"] == "team-data"
    data = spec["root"]["inputDefinitions"]["parameters"]["data"]["defaultValue"]
    assert data["dataset"] == "/mnt/dec-data/digits/v2"
    assert _caching(spec)["ingest"] is False  # files change under the same path
    names = {s["secretName"] for s in _kubernetes(spec, platform, "ingest")["secretAsEnv"]}
    assert names == {"mlflow-credentials", "team-s3"}
    for task in STEPS[1:]:
        assert "pvcMount" not in _kubernetes(spec, platform, task)


@pytest.mark.parametrize("value, problem", [
    ("Team_Data", "resource name"),
    ("team-data:../etc", "'..'"),
])
def test_a_bad_data_volume_is_one_error_naming_the_option(value, problem, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["compile", "--output", str(tmp_path / "dec.yaml"), f"--data-pvc={value}"])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --data-pvc: " in error and problem in error


def test_data_named_twice_is_refused(tmp_path, capsys):
    assert main(["compile", "--output", str(tmp_path / "dec.yaml"), "--data-pvc", "team-data",
                 "--dataset", "s3://data/x.npz"]) == 1
    assert "--dataset and --data-pvc" in capsys.readouterr().err


def test_a_local_path_is_refused_for_the_cluster(capsys):
    assert main(["submit", "--host", "http://127.0.0.1:9", "--dataset", "/home/me/x.npz"]) == 1
    assert "a path on this machine is not on the cluster" in capsys.readouterr().err


@pytest.mark.parametrize("dataset, attached", [("mnist", False), ("s3://data/x.npz", True)])
def test_before_optional_secrets_the_data_secret_is_asked_for_only_by_object_store_data(
        dataset, attached, tmp_path, capsys):
    path = tmp_path / "dec.yaml"
    assert main(["compile", "--output", str(path), "--kfp-backend", "2.5",
                 "--dataset", dataset]) == 0
    spec, platform = list(yaml.safe_load_all(path.read_text()))[:2]
    names = {s["secretName"] for s in _kubernetes(spec, platform, "ingest")["secretAsEnv"]}
    assert ("dec-data-credentials" in names) == attached
    printed = capsys.readouterr().out
    assert ("Secret 'dec-data-credentials' is required" in printed) == attached
    assert "Secret 'mlflow-credentials' is required" in printed
