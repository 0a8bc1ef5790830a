"""``submit`` and ``schedule`` against a recording stand-in for the KFP v2beta1 API on loopback.

No KFP server runs here; the stand-in answers the API shapes kfp.Client expects and keeps what
it was sent, so the test checks that the spec, the parameters and the cron arrive.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from pipelines.cli import main


class Recorder(BaseHTTPRequestHandler):
    requests: ClassVar[list] = []
    experiments: ClassVar[dict] = {}

    def log_message(self, *args):  # keep test output clean
        pass

    def _reply(self, body: dict, status: int = 200):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        self.requests.append(("GET", url.path, parse_qs(url.query), None,
                              dict(self.headers)))
        if url.path.endswith("/healthz"):
            return self._reply({"multi_user": False})
        if url.path.endswith("/experiments"):
            query = json.dumps(parse_qs(url.query))
            found = [e for name, e in self.experiments.items() if name in query]
            return self._reply({"experiments": found, "total_size": len(found)})
        return self._reply({"error": "not found"}, 404)

    def do_POST(self):
        url = urlparse(self.path)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.requests.append(("POST", url.path, {}, body, dict(self.headers)))
        if url.path.endswith("/experiments"):
            experiment = {"experiment_id": f"exp-{len(self.experiments) + 1}",
                          "display_name": body["display_name"]}
            self.experiments[body["display_name"]] = experiment
            return self._reply(experiment)
        if url.path.endswith("/runs"):
            return self._reply({"run_id": "run-1", "display_name": body.get("display_name"),
                                "experiment_id": body.get("experiment_id")})
        if url.path.endswith("/recurringruns"):
            return self._reply({"recurring_run_id": "rr-1",
                                "display_name": body.get("display_name")})
        return self._reply({"error": "not found"}, 404)


@pytest.fixture()
def kfp_server():
    Recorder.requests, Recorder.experiments = [], {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", Recorder
    server.shutdown()
    server.server_close()


def _posted(recorder, suffix):
    return [r[3] for r in recorder.requests if r[0] == "POST" and r[1].endswith(suffix)]


def test_submit_sends_the_spec_and_parameters(kfp_server, capsys):
    host, recorder = kfp_server
    rc = main(["submit", "--host", host, "--experiment", "dec-nightly", "--run-name", "try-1",
               "--mlflow-uri", "http://mlflow.mlflow:5000", "--existing-token", "t0k3n",
               "pretrain.epochs=7", "dec.maxiter=900"])
    assert rc == 0
    assert "run-1" in capsys.readouterr().out
    (experiment,) = _posted(recorder, "/experiments")
    assert experiment["display_name"] == "dec-nightly"
    (run,) = _posted(recorder, "/runs")
    assert run["display_name"] == "try-1" and run["experiment_id"] == "exp-1"
    spec = run["pipeline_spec"]["pipeline_spec"]
    assert "kubernetes" in run["pipeline_spec"]["platform_spec"]["platforms"]  # GPU toleration
    assert spec["pipelineInfo"]["name"] == "dec-pipeline"
    assert sorted(spec["root"]["dag"]["tasks"]) == sorted(
        ["ingest", "pretrain", "init-clusters", "dec-train", "evaluate", "register"])
    params = run["runtime_config"]["parameters"]
    assert params["pretrain_config"]["epochs"] == 7 and params["dec"]["maxiter"] == 900
    assert params["tracking_uri"] == "http://mlflow.mlflow:5000"
    # The token travels as a header, never inside the spec or the parameters.
    headers = next(r[4] for r in recorder.requests if r[1].endswith("/runs"))
    assert headers.get("authorization") == "Bearer t0k3n"
    assert "t0k3n" not in json.dumps(run)


def test_schedule_creates_a_recurring_run_with_the_cron(kfp_server, capsys):
    host, recorder = kfp_server
    rc = main(["schedule", "--host", host, "--cron", "0 0 3 * * *", "--experiment", "retrain",
               "--job-name", "nightly", "dec.tol=0.002"])
    assert rc == 0
    assert "rr-1" in capsys.readouterr().out
    (job,) = _posted(recorder, "/recurringruns")
    assert job["display_name"] == "nightly"
    assert job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert job["max_concurrency"] in (1, "1") and job["no_catchup"] is True
    assert job["experiment_id"] == "exp-1"
    assert job["runtime_config"]["parameters"]["dec"]["tol"] == 0.002
    assert job["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "dec-pipeline"


def test_schedule_reuses_an_existing_experiment(kfp_server):
    host, recorder = kfp_server
    recorder.experiments["retrain"] = {"experiment_id": "exp-9", "display_name": "retrain"}
    assert main(["schedule", "--host", host, "--cron", "0 0 3 * * *",
                 "--experiment", "retrain"]) == 0
    assert _posted(recorder, "/experiments") == []
    assert _posted(recorder, "/recurringruns")[0]["experiment_id"] == "exp-9"


def test_bad_overrides_are_refused_before_anything_is_sent(kfp_server, capsys):
    host, recorder = kfp_server
    assert main(["submit", "--host", host, "pretrain.epochs=many"]) == 1
    assert "pretrain.epochs" in capsys.readouterr().err
    assert _posted(recorder, "/runs") == []


def _kubernetes(pipeline_spec, task):
    spec, platform = pipeline_spec["pipeline_spec"], pipeline_spec["platform_spec"]
    label = spec["root"]["dag"]["tasks"][task]["componentRef"]["name"].replace("comp-", "exec-")
    return platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][label]


PLACEMENT = ["--gpus", "4", "--gpu-node-selector", "pool=h100",
             "--gpu-toleration", "dedicated=gpu:NoSchedule", "--dec-on-gpu",
             "--mlflow-secret", "team-mlflow", "--checkpoint-pvc", "dec-checkpoints"]


@pytest.mark.parametrize("command", [
    ["submit"], ["schedule", "--cron", "0 0 3 * * *"]])
def test_placement_options_reach_the_cluster(command, kfp_server, monkeypatch):
    host, recorder = kfp_server
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pa55-w0rd-never-sent")
    assert main([*command, "--host", host, *PLACEMENT]) == 0
    (sent,) = _posted(recorder, "/runs" if command == ["submit"] else "/recurringruns")
    pipeline_spec = sent["pipeline_spec"]
    spec = pipeline_spec["pipeline_spec"]
    pretrain, dec = (_kubernetes(pipeline_spec, t) for t in ("pretrain", "dec-train"))
    executors = spec["deploymentSpec"]["executors"]
    assert executors["exec-pretrain"]["container"]["resources"]["accelerator"][
        "resourceCount"] == "4"
    for task in (pretrain, dec):
        assert task["nodeSelector"] == {"labels": {"pool": "h100"}}
        assert task["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "gpu",
                                        "effect": "NoSchedule"}]
    assert pretrain["pvcMount"][0]["mountPath"] == "/mnt/dec-checkpoints"
    assert (spec["root"]["inputDefinitions"]["parameters"]["checkpoint_root"]["defaultValue"]
            == "/mnt/dec-checkpoints")
    # The run's parameters leave checkpoint_root to that default.
    assert "checkpoint_root" not in sent["runtime_config"].get("parameters", {})
    for task in ("ingest", "pretrain", "init-clusters", "dec-train", "evaluate", "register"):
        secrets = {s["secretName"]: s for s in _kubernetes(pipeline_spec, task)["secretAsEnv"]}
        # Ingest also reads the optional object-store Secret (tests/test_pipeline_spec.py).
        assert set(secrets) - {"dec-data-credentials"} == {"team-mlflow"}
        assert secrets["team-mlflow"]["optional"] is True
    assert "pa55-w0rd-never-sent" not in json.dumps(sent)


def test_a_bad_placement_option_sends_nothing(kfp_server, capsys):
    host, recorder = kfp_server
    with pytest.raises(SystemExit):
        main(["submit", "--host", host, "--gpu-toleration", "nvidia.com/gpu:Sometimes"])
    assert "argument --gpu-toleration" in capsys.readouterr().err
    assert recorder.requests == []


def test_scheduled_retraining_warm_starts_and_never_reads_a_cache(kfp_server):
    host, recorder = kfp_server
    assert main(["schedule", "--host", host, "--cron", "0 0 3 * * *", "--retrain"]) == 0
    (sent,) = _posted(recorder, "/recurringruns")
    assert sent["runtime_config"]["parameters"]["registry"]["warm_start"] is True
    tasks = sent["pipeline_spec"]["pipeline_spec"]["root"]["dag"]["tasks"]
    assert not any(task.get("cachingOptions", {}).get("enableCache") for task in tasks.values())
