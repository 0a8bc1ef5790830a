"""Benchmark: the registered model behind ``mlflow models serve`` or MLServer under a steady load.

Registers a DEC model of the default size (784-500-500-2000-10, ten clusters; untrained
weights compute exactly what trained ones do) in a SQLite store in a temporary directory, or
takes ``--model-uri`` (with ``--tracking-uri``); serves it on loopback with ``mlflow models
serve --env-manager local`` or, with ``--server mlserver``, with the KServe runtime's MLServer
(from ``--serving-venv``, made from requirements-serving.lock; configured from
docker/kserve-servingruntime.yaml; Open Inference Protocol V2). A second process then sends
``--requests`` requests per batch size (real MNIST digits, uint8 N×28×28 as JSON) from
``--concurrency`` threads, each holding one keep-alive connection, and records errors, latency
percentiles and throughput.

    .venv/bin/python bench/serve_load.py                        # 10,000 requests per batch size
    .venv/bin/python bench/serve_load.py --requests 300         # a quick look
    .venv/bin/python bench/serve_load.py --server mlserver --requests 300

Writes ``bench/results/serve_load.json`` (``serve_load_mlserver.json``) and prints a Markdown
table.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import date
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
START_TIMEOUT_S = 180


# ----------------------------------------------------------------------------------- the client

def client_main(args: argparse.Namespace) -> int:
    """Runs in its own process: the load, measured; one JSON line of results on stdout."""
    import numpy as np

    from dec_lib.data.datasets import load_dataset

    digits = np.rint(load_dataset("mnist", n_samples=max(args.batch_sizes) * 8, seed=1).x * 255)
    digits = digits.astype(np.uint8).reshape(-1, 28, 28)
    results = []
    for batch_size in args.batch_sizes:
        batches = [digits[i * batch_size:(i + 1) * batch_size] for i in range(8)]
        bodies = [json.dumps(_body(batch, args.server)).encode()
                  for batch in batches]  # eight different batches, in turn
        _load(args.port, bodies, args.warmup, args.concurrency, args.path)  # not measured
        results.append({"batch_size": batch_size, "body_bytes": len(bodies[0]),
                        **_load(args.port, bodies, args.requests, args.concurrency, args.path)})
    print(json.dumps(results))
    return 0


def _body(batch, server: str) -> dict:
    """The request for ``batch``: MLflow's ``inputs`` JSON, or an Open Inference Protocol one."""
    if server == "mlflow":
        return {"inputs": batch.tolist()}
    return {"inputs": [{"name": "images", "shape": list(batch.shape), "datatype": "UINT8",
                        "data": batch.ravel().tolist()}]}


def _load(port: int, bodies: list[bytes], requests: int, concurrency: int,
          path: str = "/invocations") -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    next_request = iter(range(requests))

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                index = next(next_request, None)
            if index is None:
                break
            started = time.perf_counter()
            try:
                connection.request("POST", path, body=bodies[index % len(bodies)],
                                   headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                outcome = None if response.status == 200 else f"HTTP {response.status}"
            except (OSError, http.client.HTTPException) as error:
                outcome = type(error).__name__
                connection.close()  # a new connection for the next request
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            seconds = time.perf_counter() - started
            with lock:
                if outcome is None:
                    latencies.append(seconds)
                else:
                    errors[outcome] = errors.get(outcome, 0) + 1
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if not requests:
        return {}
    import numpy as np

    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"requests": requests, "ok": len(latencies), "errors": sum(errors.values()),
            "error_kinds": errors, "wall_s": round(wall, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p90_ms": round(float(np.percentile(ms, 90)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2),
            "requests_per_s": round(len(latencies) / wall, 1)}


# ----------------------------------------------------------------------------------- the server

def register_model(root: Path) -> tuple[str, str]:
    """A default-size DEC registered as the register step does it; (tracking URI, model URI)."""
    import mlflow
    import numpy as np

    from dec_lib.config import AutoencoderConfig
    from dec_lib.mlops import tracking
    from dec_lib.mlops.registry import log_and_register
    from dec_lib.model.autoencoder import build_autoencoder, encoder_of
    from dec_lib.model.dec_model import build_dec_model
    from dec_lib.model.saving import save_model
    from dec_lib.runtime.seeding import seed_everything

    seed_everything(0)
    encoder = encoder_of(build_autoencoder(784, AutoencoderConfig()))
    centres = np.random.default_rng(0).normal(size=(10, encoder.output.shape[-1]))
    save_model(build_dec_model(encoder, centres.astype(np.float32), alpha=1.0),
               root / "dec.keras")
    uri = tracking.sqlite_uri(root)
    experiment = mlflow.MlflowClient(uri).create_experiment(
        "serve-load", artifact_location=tracking.artifact_root_for(uri))
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=experiment) as run:
        registration = log_and_register(root / "dec.keras", mapping={i: i for i in range(10)},
                                        image_shape=(28, 28), model_name="dec-load",
                                        metrics={}, run_id=run.info.run_id,
                                        work_dir=root / "register")
    return uri, registration.model_uri


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pings(port: int, path: str = "/ping") -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


MLSERVER_MODEL_NAME = "dec-load"


def _start_mlserver(args, tracking_uri: str, model_uri: str, root: Path, port: int, log):
    """MLServer as docker/kserve-servingruntime.yaml configures it, on the version's files."""
    import mlflow
    import yaml

    mlflow.set_tracking_uri(tracking_uri)
    files = mlflow.artifacts.download_artifacts(artifact_uri=model_uri,
                                                dst_path=str(root / "mnt-models"))
    repo = Path(__file__).resolve().parents[1]
    runtime = yaml.safe_load((repo / "docker" / "kserve-servingruntime.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({e["name"]: e["value"] for e in runtime["spec"]["containers"][0]["env"]})
    env.update(MLSERVER_HOST="127.0.0.1", MLSERVER_HTTP_PORT=str(port),
               MLSERVER_GRPC_PORT=str(_free_port()), MLSERVER_METRICS_PORT=str(_free_port()),
               MLSERVER_MODEL_NAME=MLSERVER_MODEL_NAME, MLSERVER_MODEL_URI=str(files),
               PYTHONPATH=str(repo), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen([str(args.serving_venv / "bin" / "mlserver"), "start", str(files)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
                            start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000,
                        help="measured requests per batch size (default: %(default)s)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--concurrency", type=int, default=4,
                        help="client threads, each with one keep-alive connection")
    parser.add_argument("--warmup", type=int, default=20,
                        help="unmeasured requests per batch size first")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes "
                        "(mlflow; MLServer runs its default single inference worker)")
    parser.add_argument("--server", choices=("mlflow", "mlserver"), default="mlflow")
    parser.add_argument("--serving-venv", type=Path, default=Path("/tmp/mlserver-venv"),
                        help="MLServer's environment, from requirements-serving.lock")
    parser.add_argument("--model-uri", help="serve this model instead of registering one")
    parser.add_argument("--tracking-uri", help="where --model-uri is registered")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", default="/invocations", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.output = args.output or RESULTS / ("serve_load.json" if args.server == "mlflow"
                                            else "serve_load_mlserver.json")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.client:
        return client_main(args)

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        root = Path(tmp)
        if args.model_uri:
            tracking_uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
            model_uri = args.model_uri
        else:
            tracking_uri, model_uri = register_model(root)
        port = _free_port()
        bin_dir = Path(sys.executable).parent  # mlflow runs `uvicorn` from PATH
        env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri,
               "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        log_path = root / "server.log"
        path, ready = "/invocations", "/ping"
        with open(log_path, "wb") as log:
            if args.server == "mlserver":
                server = _start_mlserver(args, tracking_uri, model_uri, root, port, log)
                path = f"/v2/models/{MLSERVER_MODEL_NAME}/infer"
                ready = f"/v2/models/{MLSERVER_MODEL_NAME}/ready"
            else:
                server = subprocess.Popen(
                    [str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri,
                     "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w",
                     str(args.workers)],
                    stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
                    start_new_session=True)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _pings(port, ready):
                if server.poll() is not None or time.monotonic() > deadline:
                    print(log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
                    print(f"error: {args.server} did not start", file=sys.stderr)
                    return 1
                time.sleep(0.5)
            client = subprocess.run(
                [sys.executable, __file__, "--client", "--port", str(port), "--path", path,
                 "--server", args.server,
                 "--requests", str(args.requests), "--warmup", str(args.warmup),
                 "--concurrency", str(args.concurrency),
                 "--batch-sizes", *map(str, args.batch_sizes)],
                capture_output=True, text=True, env=env)
            if client.returncode != 0:
                print(client.stderr[-3000:], file=sys.stderr)
                return 1
            rows = json.loads(client.stdout.strip().splitlines()[-1])
        finally:
            _stop(server)

    import mlflow

    results = {
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "model_uri": model_uri if args.model_uri else "default-size DEC (784-500-500-2000-10, "
                                                      "10 clusters), registered for the run",
        "server": (f"mlflow models serve --env-manager local -w {args.workers}"
                   if args.server == "mlflow" else
                   "mlserver start (mlserver-mlflow, dec_lib.mlops.mlserver_runtime.DECRuntime, "
                   "1 inference worker), Open Inference Protocol V2"),
        "concurrency": args.concurrency, "warmup_per_batch_size": args.warmup,
        "results": rows,
        "mlflow": mlflow.__version__,
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs",
        # Other work on the machine shows here: the 1-minute load average before and after.
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "date": date.today().isoformat(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print("| batch | requests | errors | p50 ms | p99 ms | requests/s | images/s |\n"
          "|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['batch_size']} | {row['requests']} | {row['errors']} | {row['p50_ms']} | "
              f"{row['p99_ms']} | {row['requests_per_s']} | "
              f"{row['requests_per_s'] * row['batch_size']:.0f} |")
    print(f"\n{args.concurrency} client threads, {args.workers} server worker(s), "
          f"{results['machine']}, load average {results['load_average'][0]} before and "
          f"{results['load_average'][1]} after; written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
