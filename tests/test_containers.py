"""The whole DAG in the built image under a container engine: how a user checks the images.

Needs an engine at ``$DOCKER_HOST`` (``source docker/podman-env.sh service``) holding the CPU
image (``make image-cpu``). Without them these tests skip, except where ``DEC_REQUIRE_CONTAINERS``
is set, as ``.ci/run`` sets it: there a missing engine or image fails the run.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from servers import free_port
from test_mlserver_runtime import infer, v2_images

from components.images import CPU_IMAGE, REGISTRY, VERSION
from pipelines.container_runner import run_container

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "pipelines.cli"]
NON_ROOT_UID = 10001
RUN = ["run", "--runner", "docker", "--preset", "quick", "--set", "dec.maxiter=300"]
SERVING_IMAGE = f"{REGISTRY}/dec-serving:{VERSION}"  # what `make image-serving` tags


@pytest.fixture(scope="module")
def engine():
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.ping()
        client.images.get(CPU_IMAGE)
    except docker.errors.DockerException as error:
        message = (f"no container engine with {CPU_IMAGE} ({error}); run "
                   "'source docker/podman-env.sh service' and 'make image-cpu ENGINE=podman'")
        if os.environ.get("DEC_REQUIRE_CONTAINERS"):
            pytest.fail(message)
        pytest.skip(message)
    yield client
    client.close()


def _cli(args, **kwargs):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=900, env=env,
                          **kwargs)


@pytest.fixture(scope="module")
def container_run(engine, tmp_path_factory):
    work = tmp_path_factory.mktemp("containers")
    summary_path = work / "summary.json"
    result = _cli([*RUN, "--work-dir", str(work), "--summary", str(summary_path)])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return work, json.loads(summary_path.read_text()), result


def test_a_failing_container_reports_its_exit_status_and_its_log(engine, capsys):
    before = {c.id for c in engine.containers.list(all=True)}
    status = run_container(engine, CPU_IMAGE, ["sh", "-c", "echo the-last-words >&2; exit 3"],
                           volumes={})
    assert status == 3
    assert "the-last-words" in capsys.readouterr().out
    assert {c.id for c in engine.containers.list(all=True)} == before  # nothing left behind


def test_every_step_ran_in_the_image_as_its_non_root_user(container_run):
    work, summary, result = container_run
    assert summary["alias"] == "champion" and summary["n_samples"] == 2000
    assert "DEC pipeline finished" in result.stdout
    outputs = work / "kfp-outputs"
    written = [p for p in outputs.rglob("*") if p.is_file()]
    steps = {p.relative_to(outputs).parts[1] for p in written}
    assert {"ingest", "pretrain", "init-clusters", "dec-train", "evaluate", "register"} <= steps
    assert {p.stat().st_uid for p in written} == {NON_ROOT_UID}


def test_the_champion_is_registered_and_a_fresh_process_predicts_with_it(container_run,
                                                                         mnist_subset):
    from mlflow import MlflowClient

    work, summary, _ = container_run
    client = MlflowClient(summary["tracking_uri"])
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert {f"phase_seconds.{p}" for p in summary["phase_seconds"]} <= set(run.data.metrics)
    champion = client.get_model_version_by_alias("dec-mnist", "champion")
    assert str(champion.version) == summary["model_version"]
    # The quick preset reaches about 0.76 on these 2,000 digits.
    assert summary["acc"] > 0.6

    npz = work / "probe.npz"
    np.savez(npz, x=(mnist_subset.x[:40] * 255).round().astype(np.uint8).reshape(40, 28, 28))
    out = work / "probe.csv"
    result = _cli(["predict", "--model", "models:/dec-mnist@champion", "--input", str(npz),
                   "--output", str(out), "--mlflow-uri", summary["tracking_uri"]])
    assert result.returncode == 0, result.stderr[-3000:]
    lines = out.read_text().splitlines()
    assert lines[0] == "index,cluster,label,confidence" and len(lines) == 41


def test_a_failing_step_fails_the_run_with_one_clear_line(container_run, tmp_path):
    from mlflow import MlflowClient

    work, summary, _ = container_run
    # Well-formed headers, so only the ingest step, reading the labels, can refuse it.
    broken = tmp_path / "negative-labels.npz"  # outside the work dir: mounted read-only
    rng = np.random.default_rng(0)
    np.savez(broken, x=rng.integers(0, 256, (60, 28, 28), dtype=np.uint8),
             y=np.full(60, -1, dtype=np.int64))
    result = _cli([*RUN, "--dataset", str(broken), "--work-dir", str(work)])
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ingest: ") and str(broken) in last, last
    assert "ingest: started" in result.stdout  # it failed inside the container's step
    assert "pretrain: started" not in result.stdout
    versions = MlflowClient(summary["tracking_uri"]).search_model_versions("name='dec-mnist'")
    assert [str(v.version) for v in versions] == [summary["model_version"]]


def test_a_missing_image_is_one_line_before_anything_runs(engine, tmp_path):
    result = _cli([*RUN, "--image", "localhost/no-such-image:0", "--work-dir", str(tmp_path)])
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if " INFO " not in line]
    assert errors == [
        "error: --image localhost/no-such-image:0: no such image in the container engine; "
        "build it with 'make image-cpu' (see the README)"]
    assert not (tmp_path / "kfp-outputs").exists()


def test_the_serving_image_answers_v2_with_the_registered_champion(engine, container_run,
                                                                   mnist_subset, tmp_path):
    """The KServe runtime's image, as KServe runs it: the version's files in /mnt/models."""
    import urllib.request

    import docker
    import mlflow

    try:
        engine.images.get(SERVING_IMAGE)
    except docker.errors.ImageNotFound:
        message = f"no {SERVING_IMAGE}: build it with 'make image-serving'"
        if os.environ.get("DEC_REQUIRE_CONTAINERS"):
            pytest.fail(message)
        pytest.skip(message)
    _, summary, _ = container_run
    models = tmp_path / "models"
    models.mkdir(mode=0o755)
    mlflow.set_tracking_uri(summary["tracking_uri"])
    mlflow.artifacts.download_artifacts(f"models:/dec-mnist/{summary['model_version']}",
                                        dst_path=str(models))
    for path in [models, *models.rglob("*")]:  # the image's user reads them
        path.chmod(0o755 if path.is_dir() else 0o644)
    port = free_port()
    container = engine.containers.run(
        SERVING_IMAGE, detach=True, network_mode="host",
        environment={"MLSERVER_HTTP_PORT": str(port), "MLSERVER_GRPC_PORT": str(free_port()),
                     "MLSERVER_METRICS_PORT": str(free_port())},
        mounts=[docker.types.Mount(target="/mnt/models", source=str(models), type="bind",
                                   read_only=True)])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(180):
            try:
                urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2)
                break
            except OSError:
                container.reload()
                assert container.status == "running", container.logs().decode()[-3000:]
                time.sleep(1)
        digits = np.rint(mnist_subset.x[:64] * 255).astype(np.uint8).reshape(64, 28, 28)
        status, body = infer(url, v2_images(digits))
        assert status == 200, body
        outputs = {o["name"]: o for o in body["outputs"]}
        assert set(outputs) == {"cluster", "label", "confidence"}
        assert outputs["cluster"]["shape"][0] == 64
        status, body = infer(url, v2_images(np.zeros((2, 27, 27), np.uint8)))
        assert status == 400 and "784 pixels" in json.dumps(body)
        assert container.exec_run("id -u").output.decode().strip() == str(NON_ROOT_UID)
    finally:
        container.remove(force=True)


def test_members_run_in_the_image_and_the_chosen_one_is_registered(engine, tmp_path):
    """The loop over members and the fan-in of their models, in containers (``members=3``)."""
    from mlflow import MlflowClient

    result = _cli(["run", "--runner", "docker", "--preset", "quick", "--set", "members=3",
                   "--set", "data.n_samples=600", "--set", "pretrain.epochs=5",
                   "--set", "dec.maxiter=60", "--set", "dec.update_interval=20",
                   "--work-dir", str(tmp_path), "--summary", str(tmp_path / "summary.json")])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    (run_dir,) = [p for p in (tmp_path / "kfp-outputs").iterdir() if p.is_dir()]
    members = sorted(run_dir.glob("for-loop-*-iteration-*"))
    assert len(members) == 3
    assert all((m / "dec-train" / "model" / "dec.keras").stat().st_uid == NON_ROOT_UID
               for m in members)
    chosen = int(MlflowClient(summary["tracking_uri"]).get_run(
        summary["mlflow_run_id"]).data.metrics["members.chosen"])
    chosen_dir = next(m for m in members if m.name.endswith(f"-{chosen}"))
    assert ((run_dir / "choose-member" / "model" / "dec.keras").read_bytes()
            == (chosen_dir / "dec-train" / "model" / "dec.keras").read_bytes())
    assert summary["alias"] == "champion" and "choose_member" in summary["phase_seconds"]
