"""``dec-pipeline``: run the DAG locally, compile it, submit or schedule it, predict with a model.

The CLI decides what the user sees: progress comes from the steps' log events
(``dec_lib.runtime.events``), and every command ends with one summary or one error line (exit
status 1 for a user mistake).
"""

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import sys
import tempfile
import time
import warnings
from pathlib import Path

from dec_lib import names
from dec_lib.config import PRESETS, RunConfig, preset
from dec_lib.errors import DecError, short_text
from dec_lib.mlops.registry_names import check_model_name
from dec_lib.runtime import events
from dec_lib.runtime.files import replaced
from dec_lib.runtime.progress import format_duration, log_line, setup_logging
from pipelines.backends import BACKENDS, DEFAULT_BACKEND
from pipelines.interrupts import GRACE_SECONDS, Interrupted, descendants, stop_on_signals, wait_gone

log = logging.getLogger("dec.cli")


def build_config(args: argparse.Namespace) -> RunConfig:
    """Preset, then ``--config``, then ``--dataset``/``--seed``/``--set``, then positional
    ``KEY=VALUE`` (submit, schedule): later wins."""
    # Retraining continues the one champion (a mean of members continues as one model), so it
    # trains one member, unless --set asks for more, which the configuration then refuses.
    overrides: list[str] = ["members=1"] if getattr(args, "retrain", False) else []
    if getattr(args, "data_pvc", None):
        if getattr(args, "dataset", None):
            raise DecError("--dataset and --data-pvc both name the data; give the path inside "
                           "the volume as --data-pvc NAME:SUBPATH")
        overrides.append(f"data.dataset={args.data_pvc[1]}")
    if getattr(args, "dataset", None):
        overrides.append(f"data.dataset={args.dataset}")
    if getattr(args, "seed", None) is not None:
        overrides.append(f"seed={args.seed}")
    overrides.extend(getattr(args, "set", None) or [])
    if getattr(args, "retrain", False):
        overrides.append("registry.warm_start=true")
    overrides.extend(getattr(args, "assignments", None) or [])
    if getattr(args, "config", None):
        from dec_lib.config.files import config_from_file

        return config_from_file(args.config, overrides, base_preset=args.preset)
    return preset(args.preset or "default", overrides)


def _config_source(args: argparse.Namespace) -> str:
    """Where the configuration came from, for the log: the preset and the file, if any."""
    if not getattr(args, "config", None):
        return f"preset {args.preset or 'default'}"
    from dec_lib.config.files import load_config_file

    named = args.preset or load_config_file(args.config).get("preset") or "default"
    return f"preset {named} with {args.config}"


# ------------------------------------------------------------------------------------------ run

def cmd_run(args: argparse.Namespace) -> int:
    from kfp import local

    from dec_lib.mlops import tracking
    from pipelines.dag import build_pipeline, pipeline_arguments

    config = build_config(args)
    check_model_name(args.model_name)
    work_dir = writable_work_dir(args.work_dir)
    tracking_uri = _credentials_to_env(args.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
                                       or tracking.sqlite_uri(work_dir))
    tracking.check_tracking_uri(tracking_uri)
    from dec_lib.data.datasets import check_source

    check_source(config.data.dataset)  # what names and headers tell, before any run exists
    os.environ.update({"TF_CPP_MIN_LOG_LEVEL": "2",
                       "DEC_LOG_LEVEL": logging.getLevelName(log.getEffectiveLevel())})
    log.info("%s on %s: %s", _config_source(args), config.data.dataset,
             ", ".join(f"{k}={v}" for k, v in config.flat().items()
                       if k in ("seed", "data.n_samples", "pretrain.epochs", "dec.maxiter")))
    log.info("MLflow tracking URI: %s", tracking_uri)

    runner, placement, config = _local_runner(args, config, work_dir, tracking_uri)
    local.init(runner=runner, pipeline_root=str(work_dir / "kfp-outputs"), raise_on_error=False)
    # kfp.local does not cache, and every step logs straight into the run's MLflow run.
    pipeline = build_pipeline(config, placement, model_name=args.model_name, cache=False)
    log_path = work_dir / "logs" / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    started = time.perf_counter()
    output = StepOutput(log_path, show_all=args.verbose)
    with stop_on_signals():
        try:
            with warnings.catch_warnings(), output:
                # Locally the components run in this environment, so the cluster-only task
                # settings (images, resources, accelerators) are expected to be ignored.
                warnings.filterwarnings("ignore", message=".*non-Python base image.*")
                warnings.filterwarnings("ignore",
                                        message=".*no effect in the current local runner.*")
                task = pipeline(**pipeline_arguments(
                    config, model_name=args.model_name, tracking_uri=tracking_uri,
                    experiment=args.experiment, checkpoint_root=str(work_dir / "checkpoints")))
        except Interrupted as stop:
            wait_gone(stop.pids + descendants(), GRACE_SECONDS + 1)
            stop.detail = _end_runs_left_running(
                output.run_ids, tracking_uri, "KILLED",
                f"interrupted by {signal.Signals(stop.signum).name} (dec-pipeline run)")
            raise
    wall = time.perf_counter() - started
    registered = task.outputs.get("Output")
    if registered is None or not registered.metadata:
        reason = output.errors[-1] if output.errors else ""
        if not reason:
            if not args.verbose:
                sys.stderr.write("".join(output.tail))
            reason = f"a pipeline step failed; the full log is {log_path}"
        # A step that died without a word (killed, crashed) could not end the run itself.
        _end_runs_left_running(output.run_ids, tracking_uri, "FAILED",
                               reason.splitlines()[-1])
        raise DecError(reason.splitlines()[-1])
    log.info("full log: %s", log_path)
    summary = _summary(registered.metadata, config, wall)
    _print_summary(summary)
    if args.summary:
        Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
        Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def _local_runner(args: argparse.Namespace, config: RunConfig, work_dir: Path,
                  tracking_uri: str):
    """kfp.local's runner for ``--runner``, the placement of the steps, and ``config`` with a
    local data set's path made absolute where the containers see it."""
    from kfp import local

    if args.runner != "docker":
        return local.SubprocessRunner(use_venv=False), None, config
    from components.images import CPU_IMAGE
    from pipelines.container_runner import docker_runner
    from pipelines.dag import Placement

    image = args.image or CPU_IMAGE
    data = None
    if config.data.dataset != "mnist" and "://" not in config.data.dataset:
        data = Path(config.data.dataset).resolve()
        config = config.with_overrides({"data.dataset": str(data)})
    runner = docker_runner(image, work_dir, tracking_uri, data)
    log.info("every step runs in a container of %s", image)
    return runner, Placement(image=image, gpu_image=image, local=True), config


def _end_runs_left_running(run_ids: list[str], tracking_uri: str, status: str,
                           reason: str) -> str:
    """End with ``status`` the MLflow runs ``run_ids`` (the steps' run events) left RUNNING;
    returns where the pipeline stopped and which run, for the one line the user sees."""
    import mlflow

    from dec_lib.mlops import tracking

    if not run_ids:
        return "before any step started; no MLflow run was created"
    mlflow.set_tracking_uri(tracking_uri)
    where = ""
    for run_id in run_ids:
        try:
            where = tracking.end_if_left_running(run_id, status, reason, names.ALL_STEPS)
        except Exception as error:  # the user's line is about the pipeline, not this
            log.warning("could not mark MLflow run %s %s: %s", run_id, status,
                        tracking.redact(str(error)))
    return f"stopped {where}; MLflow run {run_ids[-1]} is {status}"


def writable_work_dir(path: str) -> Path:
    """``path``, created if missing and tried with a small write, or one error that names it.

    Checked before anything starts, so an unwritable or full work dir is one line, not a
    traceback or a step that fails halfway.
    """
    work_dir = Path(path).resolve()
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=work_dir) as probe:
            probe.write(b"0")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise DecError(f"{work_dir}: the work dir is not writable ({error.strerror or error}); "
                       "pass --work-dir a directory you can write to") from None
    return work_dir


def writable_output(path: str) -> Path:
    """``path`` as a file this command can write, checked before the work that fills it.

    ``predict`` found an output path under a regular file, or in a read-only folder, only
    after inference, as a traceback; now it is one line naming the path, before anything runs.
    """
    output = Path(path)
    if output.is_dir():
        raise DecError(f"{output}: is a directory; --output needs a file name")
    for folder in output.parents:  # the nearest that exists must be a folder
        if folder.exists():
            if not folder.is_dir():
                raise DecError(f"{output}: {folder} is a file, not a folder (Not a directory); "
                               "pass --output a path in a folder you can write to")
            break
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output.parent):
            pass
    except OSError as error:
        raise DecError(f"{output}: cannot write there ({error.strerror or error}); pass "
                       "--output a path in a folder you can write to") from None
    return output


class StepOutput:
    """Stands in for stdout while the local runner streams the steps' output.

    kfp.local's runners relay each step's stdout and stderr here, with the step's events
    (``dec_lib.runtime.events``) among them. Log events become text lines, in the log file and
    on the terminal; run and error events are collected for ``cmd_run``; any other line goes to
    the log file, and to the terminal only with ``--verbose``. The last lines are kept to show
    when a step crashes without an error event.

    Parameters
    ----------
    log_path : pathlib.Path
        The full log of the run.
    show_all : bool, default False
        Show every line on the terminal (``--verbose``), not only the steps' log events.
    keep : int, default 40
        How many of the last lines to keep in ``tail``.
    """

    def __init__(self, log_path: Path, show_all: bool = False, keep: int = 40):
        self.log_path, self.show_all, self.keep = log_path, show_all, keep
        self.tail: list[str] = []
        self.run_ids: list[str] = []
        """The MLflow runs the steps opened, in order, each once."""
        self.errors: list[str] = []
        """The steps' error lines, in order."""
        self._pending = ""

    def __enter__(self) -> "StepOutput":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.log_path, "w", encoding="utf-8")
        self._stdout, sys.stdout = sys.stdout, self
        return self

    def __exit__(self, *exc) -> None:
        if self._pending:
            self.write("\n")
        sys.stdout = self._stdout
        self._file.close()

    def write(self, text: str) -> int:
        """Take ``text`` from the runner; complete lines are handled at once.

        Parameters
        ----------
        text : str
            Output in any pieces (the docker runner relays chunks, not lines).

        Returns
        -------
        int
            ``len(text)``, as ``sys.stdout.write`` does.
        """
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._take(line)
        self._stdout.flush()
        return len(text)

    def _take(self, line: str) -> None:
        event = events.parse(line)
        if event is not None and event.kind == events.RUN:
            if event.fields["run_id"] not in self.run_ids:
                self.run_ids.append(event.fields["run_id"])
            return
        if event is not None and event.kind == events.ERROR:
            self.errors.append(event.message)  # the step logged it too, as a log event
            return
        if event is None:
            text, shown = line, self.show_all
        else:  # a log event: the text line it stands for, indented as the runner indents
            indent = line[:len(line) - len(line.lstrip())]
            text, shown = indent + log_line(event.fields).replace("\n", "\n" + indent), True
        self._file.write(text + "\n")
        self.tail = [*self.tail[-self.keep + 1:], text + "\n"]
        if shown:
            self._stdout.write((text if self.show_all else text.strip()) + "\n")

    def flush(self) -> None:
        """Flush the log file and the terminal."""
        self._file.flush()
        self._stdout.flush()


def _summary(registered: dict, config: RunConfig, wall: float) -> dict:
    import mlflow

    run = mlflow.MlflowClient(registered["tracking_uri"]).get_run(registered["mlflow_run_id"])
    metrics = run.data.metrics
    return {
        "acc": metrics.get("acc"),
        "nmi": metrics.get("nmi"),
        "ari": metrics.get("ari"),
        "silhouette": metrics.get("silhouette"),
        "n_samples": int(float(run.data.params.get("data.n_images", "0"))),
        "model_name": registered["model_name"],
        "model_version": registered["model_version"],
        "alias": registered["alias"],
        "model_uri": registered["model_uri"],
        "mlflow_run_id": registered["mlflow_run_id"],
        "tracking_uri": registered["tracking_uri"],
        "promotion": {k: registered.get(k) for k in (
            "decision", "reason", "criterion", "candidate_score", "champion_score",
            "champion_version")},
        # Label-free drift of this data from the champion's training data (retraining only).
        "drift": {k.removeprefix("drift."): metrics[k] for k in (
            "drift.low_confidence_share", "drift.cluster_size_tvd") if k in metrics} or None,
        "seed": config.seed,
        "wall_seconds": round(wall, 2),
        # With members, the chosen member's pretraining, initialisation and self-training.
        "phase_seconds": {p: round(metrics.get(f"phase_seconds.{p}", float("nan")), 2)
                          for p in names.ALL_STEPS
                          if p in names.STEPS or f"phase_seconds.{p}" in metrics},
        "peak_memory_mb": {p: round(metrics.get(f"peak_memory_mb.{p}", float("nan")))
                           for p in names.ALL_STEPS
                           if p in names.STEPS or f"peak_memory_mb.{p}" in metrics},
        "config": config.to_dict(),
    }


def _print_summary(summary: dict) -> None:
    nothing_trained = summary["promotion"].get("decision") == "skipped"

    def fmt(value):
        if value is None:
            return "n/a (nothing trained)" if nothing_trained else "n/a (no labels)"
        return f"{value:.4f}"

    lines = [
        "",
        "DEC pipeline finished",
        f"  images          {summary['n_samples']}",
        f"  ACC / NMI / ARI {fmt(summary['acc'])} / {fmt(summary['nmi'])} / "
        f"{fmt(summary['ari'])}",
        f"  model           {summary['model_name']} version {summary['model_version']} "
        f"(alias {summary['alias']}): {summary['model_uri']}",
        f"  promotion       {summary['promotion']['decision']}: "
        f"{summary['promotion']['reason']}",
        *([f"  drift           {summary['drift']['low_confidence_share']:.1%} of images below "
           f"the champion's training median confidence (~50% if none); cluster sizes moved "
           f"{summary['drift']['cluster_size_tvd']:.3f} (total variation)"]
          if summary.get("drift") else []),
        f"  MLflow          run {summary['mlflow_run_id']} at {summary['tracking_uri']}",
        f"  time            {format_duration(summary['wall_seconds'])} in all: "
        + ", ".join(f"{p} {format_duration(s)}" for p, s in summary["phase_seconds"].items()),
    ]
    print("\n".join(lines))


# -------------------------------------------------------------------------------------- compile

def cmd_compile(args: argparse.Namespace) -> int:
    from pipelines.backends import compile_package
    from pipelines.dag import build_pipeline

    placement = _placement(args)
    target = _backend(args)
    config = build_config(args)
    check_model_name(args.model_name)
    output = writable_output(args.output)
    compile_package(build_pipeline(config, placement, cache=args.cache,
                                   model_name=args.model_name, backend=target),
                    str(output), target)
    print(f"compiled {output} ({_describe(placement)})")
    _print_backend_notes(placement, target, config)
    return 0


def _backend(args: argparse.Namespace):
    from pipelines.backends import backend

    return backend(args.kfp_backend)


def _print_backend_notes(placement, target, config: RunConfig) -> None:
    """What the user must know about running on ``target``: printed with the package."""
    from pipelines.backends import required_secret_keys
    from pipelines.dag import DATA_SECRET_KEYS, MLFLOW_SECRET_KEYS, needs_data_secret

    print(f"for {target.covers}")
    secrets = [(placement.mlflow_secret, MLFLOW_SECRET_KEYS)]
    if needs_data_secret(config.data.dataset, target):
        secrets.append((placement.data_secret, DATA_SECRET_KEYS))
    for name, keys in secrets:
        required = required_secret_keys(target, keys)
        if required:
            print(f"  Secret {name!r} is required, with every key: {', '.join(required)} (an "
                  "unused one may be empty); without it pods do not start")
    if not target.retries:
        print("  retries are not compiled before KFP 2.4.1: a failed or preempted pretraining "
              "fails the run")


def _placement(args: argparse.Namespace):
    """The ``Placement`` the options name; what they leave out keeps ``Placement``'s default."""
    from pipelines.dag import Placement

    given = {"image": args.image, "gpu_image": args.gpu_image, "gpus": args.gpus,
             "gpu_node_selector": args.gpu_node_selector,
             "gpu_tolerations": tuple(args.gpu_toleration) if args.gpu_toleration else None,
             "dec_on_gpu": args.dec_on_gpu or None, "mlflow_secret": args.mlflow_secret,
             "checkpoint_pvc": args.checkpoint_pvc,
             "allow_cpu_fallback": args.allow_cpu_fallback or None,
             "data_secret": args.data_secret,
             "data_pvc": args.data_pvc[0] if args.data_pvc else None}
    return Placement(**{k: v for k, v in given.items() if v is not None})


def _describe(placement) -> str:
    gpu_steps = "pretrain and dec_train" if placement.dec_on_gpu else "pretrain"
    nodes = "=".join(placement.gpu_node_selector) if placement.gpu_node_selector else "any"
    checkpoints = (f"PVC {placement.checkpoint_pvc} at {placement.checkpoint_root}"
                   if placement.checkpoint_pvc else "none (a retry restarts pretraining)")
    fallback = ", or the CPU" if placement.allow_cpu_fallback else ""
    data = (f"; data PVC {placement.data_pvc} at /mnt/dec-data" if placement.data_pvc else "")
    return (f"images {placement.image}, {placement.gpu_image}; {gpu_steps} on "
            f"{placement.gpus} GPU(s){fallback}, nodes {nodes}; MLflow Secret "
            f"{placement.mlflow_secret}; data Secret {placement.data_secret}{data}; "
            f"checkpoints {checkpoints}")


# -------------------------------------------------------------------------------------- predict

_IDX_FILE = re.compile(r"idx\d-ubyte(\.gz)?$")


def _png_input(path: Path) -> list[Path]:
    """The PNG files to read when ``path`` is a folder of PNGs and not of IDX files, else []."""
    from dec_lib.data.image_folder import png_files

    if not path.is_dir():
        return []
    files = png_files(path)
    if files and any(_IDX_FILE.search(p.name.lower()) for p in path.iterdir()):
        return []
    return files


def _credentials_to_env(uri: str) -> str:
    """``uri`` without its ``user:password@``, which go to MLflow's environment variables.

    The steps inherit the environment; the URI itself travels as a pipeline parameter and is
    printed and logged, so it must not carry a password.
    """
    from dec_lib.mlops import tracking

    bare, user, password = tracking.split_credentials(uri)
    if user is not None:
        os.environ["MLFLOW_TRACKING_USERNAME"] = user
    if password is not None:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password
    return bare


def cmd_predict(args: argparse.Namespace) -> int:
    """Every user mistake is one line, checked in the order that costs least: the output path,
    the tracking URI, the input, the model, then the images against the model."""
    output = writable_output(args.output)
    if not args.verbose:
        _quiet_third_parties()
    from dec_lib.mlops import tracking

    tracking.bound_http_retries()  # an unreachable server: seconds, not minutes
    uri = args.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        uri = _credentials_to_env(uri)
        tracking.check_tracking_uri(uri)
    import mlflow

    from dec_lib.data.datasets import check_data_path, load_dataset
    from dec_lib.data.image_folder import read_png_files

    if uri:
        mlflow.set_tracking_uri(uri)
    check_data_path(args.input)
    files = _png_input(Path(args.input))
    if files:
        x = read_png_files(files)
    else:
        images = load_dataset(args.input)
        x = images.x.reshape((images.n_samples, *images.image_shape))
    with _native_stderr_muted(not args.verbose):  # TensorFlow's C++ start-up lines
        model = _load_model(args.model)
        try:
            predictions = model.predict(x)
        except DecError:
            raise
        except Exception as error:  # the pyfunc wraps our DataError (e.g. a shape) in its own
            raise DecError(f"{args.input}: the model cannot take these images: "
                           f"{short_text(str(error).splitlines()[0] if str(error) else '', 300)}"
                           ) from None
    predictions.insert(0, "index", range(len(predictions)))
    if files:
        predictions.insert(1, "file", [f.name for f in files])
    # Atomically: a reader never sees half a CSV, and an interrupted run leaves the previous
    # output in place.
    try:
        with replaced(output) as tmp:
            predictions.to_csv(tmp, index=False)
    except OSError as error:
        raise DecError(f"{output}: cannot write the predictions ({error.strerror or error})"
                       ) from None
    print(f"wrote {len(predictions)} predictions to {args.output}")
    return 0


def _load_model(model_uri: str):
    """The pyfunc at ``model_uri``, or one line saying why not (no such model, version or
    alias; an unreachable server, after the bounded retries)."""
    import mlflow

    try:
        return mlflow.pyfunc.load_model(model_uri)
    except Exception as error:
        from dec_lib.mlops.tracking import redact

        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DecError(f"--model {short_text(model_uri, 120)}: cannot load the model: "
                       f"{short_text(redact(first), 300)}") from None


@contextlib.contextmanager
def _native_stderr_muted(mute: bool):
    """File descriptor 2 to /dev/null within the block, when ``mute``.

    TensorFlow's C++ runtime logs through absl before ``TF_CPP_MIN_LOG_LEVEL`` is consulted
    ("oneDNN custom operations are on"), straight to the descriptor, past Python's
    ``sys.stderr``. Python errors still reach the user: they propagate, and are printed after
    the descriptor is back.
    """
    if not mute:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _quiet_third_parties() -> None:
    """TensorFlow's C++ and oneDNN notices, MLflow's warnings and progress bars: off, so the
    command prints its own lines only (``--verbose`` shows them)."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore")
    # MLflow warns while loading a model even so (its own filters win over ours): drop at the
    # point of showing instead.
    warnings.showwarning = lambda *args, **kwargs: None
    for name in ("mlflow", "tensorflow", "absl", "keras", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)


# ---------------------------------------------------------------------------------------- serve

def serve_command(model: str, host: str, port: int, workers: int) -> tuple[list[str], dict]:
    """MLflow's model server for ``model``, and the environment it needs.

    ``mlflow models serve`` starts ``uvicorn`` by name, from ``PATH``: without this
    environment's bin directory first on ``PATH`` it fails with status 127 (or runs another
    environment's uvicorn) for anyone who has not activated the venv.
    """
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model,
               "--env-manager", "local", "-h", host, "-p", str(port), "-w", str(workers)]
    return command, env


def cmd_serve(args: argparse.Namespace) -> int:
    import subprocess

    if args.mlflow_uri:
        os.environ["MLFLOW_TRACKING_URI"] = _credentials_to_env(args.mlflow_uri)
    command, env = serve_command(args.model, args.host, args.port, args.workers)
    print(f"serving {args.model} at http://{args.host}:{args.port}/invocations "
          "(POST {\"inputs\": images}; Ctrl-C stops)", flush=True)
    process = subprocess.Popen(command, env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        process.wait()
        return 130


# ------------------------------------------------------------------------------ submit/schedule

def _client(args: argparse.Namespace):
    import kfp

    from dec_lib.data.remote import is_remote

    # Checked before connecting: a mistake in the options is not the server's.
    if args.dataset and args.dataset != "mnist" and not is_remote(args.dataset):
        raise DecError(f"--dataset {args.dataset}: a path on this machine is not on the "
                       "cluster; give an s3://, gs:// or https:// URI, or --data-pvc "
                       "NAME[:SUBPATH] for data on a volume")

    return kfp.Client(host=args.host, namespace=args.namespace,
                      existing_token=args.existing_token or os.environ.get("KF_PIPELINES_TOKEN"))


def _compiled_package(args: argparse.Namespace, directory: str) -> tuple[str, dict]:
    from pipelines.backends import compile_package
    from pipelines.dag import build_pipeline, pipeline_arguments

    config = build_config(args)
    placement = _placement(args)
    target = _backend(args)
    path = os.path.join(directory, "dec-pipeline.yaml")
    # Recurring runs read data that changes under the same path: never serve it from a cache.
    cache = args.cache and args.command != "schedule"
    compile_package(build_pipeline(config, placement, model_name=args.model_name, cache=cache,
                                   backend=target), path, target)
    _print_backend_notes(placement, target, config)
    arguments = pipeline_arguments(config, model_name=args.model_name)
    if args.mlflow_uri:
        from dec_lib.mlops import tracking

        if tracking.split_credentials(args.mlflow_uri)[1] is not None:
            raise DecError("--mlflow-uri: a URI with user:password@ would be stored in the run's "
                           "parameters; put the credentials in the MLflow Secret instead "
                           "(--mlflow-secret)")
        arguments["tracking_uri"] = args.mlflow_uri
    return path, arguments


def _check_kfp_arguments(args: argparse.Namespace) -> None:
    """Everything ``submit`` and ``schedule`` can check here, before contacting the cluster: a
    mistake is one line now, not a run that fails on the cluster minutes later."""
    from dec_lib.mlops import tracking

    build_config(args)
    check_model_name(args.model_name)
    if args.mlflow_uri:
        tracking.check_tracking_uri(args.mlflow_uri, local=False)


def cmd_submit(args: argparse.Namespace) -> int:
    _check_kfp_arguments(args)
    client = _client(args)
    with tempfile.TemporaryDirectory() as tmp:
        package, arguments = _compiled_package(args, tmp)
        result = client.create_run_from_pipeline_package(
            package, arguments=arguments, run_name=args.run_name,
            experiment_name=args.experiment, namespace=args.namespace)
    print(f"submitted run {result.run_id} in experiment {args.experiment!r}")
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    _check_kfp_arguments(args)
    client = _client(args)
    # create_experiment returns the existing experiment of that name, if there is one.
    experiment = client.create_experiment(args.experiment, namespace=args.namespace)
    with tempfile.TemporaryDirectory() as tmp:
        package, arguments = _compiled_package(args, tmp)
        job = client.create_recurring_run(
            experiment_id=experiment.experiment_id, job_name=args.job_name,
            cron_expression=args.cron, params=arguments, pipeline_package_path=package,
            max_concurrency=1, no_catchup=True)
    print(f"scheduled {args.job_name!r} ({args.cron}) as recurring run "
          f"{job.recurring_run_id} in experiment {args.experiment!r}")
    return 0


# --------------------------------------------------------------------------------------- config

def cmd_config_show(args: argparse.Namespace) -> int:
    config = build_config(args)
    if args.format == "text":
        for key, value in config.flat().items():
            print(f"{key} = {json.dumps(value)}")
        return 0
    from dec_lib.config.files import format_config

    print(format_config(config, args.format), end="")
    return 0


# --------------------------------------------------------------------------------------- parser

def _add_config_options(parser: argparse.ArgumentParser, data: bool = True) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="named configuration to start from (default: the file's "
                        "'preset' key with --config, else default)")
    parser.add_argument("--config", metavar="FILE", help="YAML (.yaml, .yml) or TOML (.toml) "
                        "configuration applied over the preset; --dataset, --seed and --set "
                        "win over it (write one with 'config show --format yaml')")
    if data:
        parser.add_argument("--dataset", help="'mnist' (default), a path or an s3://, gs:// "
                            "or https:// URI of: an .npz with x (and optional y), a directory "
                            "of IDX files, or a directory of PNG images")
    parser.add_argument("--seed", type=int, help="random seed for every step")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                        help="override one setting, e.g. --set pretrain.epochs=50 (repeatable)")


def _add_mode_options(parser: argparse.ArgumentParser, schedule: bool = False,
                      cache: bool = True) -> None:
    parser.add_argument("--retrain", action="store_true",
                        help="retraining mode (registry.warm_start=true, members=1): start "
                        "from the registered champion instead of pretraining; train and "
                        "register nothing when the data is unchanged; promote only past the "
                        "gate")
    if not cache:
        return
    if not schedule:
        parser.add_argument("--no-cache", dest="cache", action="store_false",
                            help="do not let ingest and pretraining reuse cached outputs "
                            "(they are cacheable by their inputs; a changed file under the "
                            "same path is not seen by a cached ingest)")
    else:
        parser.set_defaults(cache=False)


def _add_kfp_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", required=True, help="KFP API endpoint, e.g. "
                        "https://kubeflow.example.com/pipeline")
    parser.add_argument("--namespace", default=None, help="Kubernetes namespace (multi-user)")
    parser.add_argument("--existing-token", default=None,
                        help="bearer token (default: $KF_PIPELINES_TOKEN)")
    parser.add_argument("--experiment", default=names.DEFAULT_EXPERIMENT,
                        help="KFP experiment, created if missing (default: %(default)s)")
    parser.add_argument("--model-name", default=names.DEFAULT_MODEL_NAME,
                        help="registered model name (default: %(default)s)")
    parser.add_argument("--mlflow-uri", help="tracking URI the pods use (default: "
                        "MLFLOW_TRACKING_URI from the --mlflow-secret Secret)")
    _add_placement_options(parser)
    parser.add_argument("assignments", nargs="*", metavar="KEY=VALUE",
                        help="configuration overrides, as with --set")


def _add_placement_options(parser: argparse.ArgumentParser) -> None:
    """Where the steps run on the cluster: ``compile``, ``submit`` and ``schedule`` share these."""
    group = parser.add_argument_group(
        "placement on the cluster",
        "Pretraining runs on a GPU node. Each step reads MLFLOW_TRACKING_URI, "
        "MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD and MLFLOW_TRACKING_TOKEN from an "
        "optional Secret, so no credential is ever written into the package. Without "
        "--checkpoint-pvc, pretraining writes no checkpoints (checkpoint_root is empty) and a "
        "retried (e.g. preempted) pretraining pod starts over.")
    group.add_argument("--image", help="component image (default: the project's CPU image)")
    group.add_argument("--gpu-image", help="image of the GPU steps (default: the GPU image)")
    group.add_argument("--gpus", type=_positive_int, metavar="N",
                       help="GPUs for pretraining; more than one trains with "
                       "tf.distribute.MirroredStrategy (default: 1)")
    group.add_argument("--gpu-node-selector", type=_from_dag("parse_node_selector"),
                       metavar="KEY=VALUE", help="node label the GPU steps require, e.g. "
                       "cloud.google.com/gke-accelerator=nvidia-h100-80gb")
    group.add_argument("--gpu-toleration", type=_from_dag("Toleration.parse"), action="append",
                       metavar="KEY[=VALUE][:EFFECT]",
                       help="taint the GPU steps tolerate, replacing the default "
                       "nvidia.com/gpu:NoSchedule (repeatable; without =VALUE any value, "
                       "without :EFFECT any effect)")
    group.add_argument("--dec-on-gpu", action="store_true",
                       help="run DEC training on a GPU node too (one GPU)")
    group.add_argument("--mlflow-secret", metavar="NAME", type=_from_dag("check_resource_name"),
                       help="Secret holding the MLflow URI and credentials; it and each of "
                       "its keys are optional from KFP 2.15, required before "
                       "(default: mlflow-credentials)")
    group.add_argument("--checkpoint-pvc", metavar="NAME", type=_from_dag("check_resource_name"),
                       help="PersistentVolumeClaim mounted on the pretraining pod at "
                       "/mnt/dec-checkpoints, which becomes checkpoint_root, so that a retried "
                       "pod resumes from its last checkpoint (ReadWriteMany, or one run at a "
                       "time; writable by uid 10001, see the README)")
    group.add_argument("--allow-cpu-fallback", action="store_true",
                       help="let a GPU step train on the CPU when TensorFlow sees no GPU "
                       "(default: it fails at once, naming the cause)")
    group.add_argument("--kfp-backend", choices=list(BACKENDS), default=DEFAULT_BACKEND,
                       help="the oldest KFP backend version the package must run on: "
                       + "; ".join(f"{v}: {b.covers}" for v, b in BACKENDS.items())
                       + " (default: %(default)s; older targets make the Secret's keys "
                       "required)")
    group.add_argument("--data-secret", metavar="NAME", type=_from_dag("check_resource_name"),
                       help="optional Secret whose keys (AWS_ACCESS_KEY_ID, "
                       "AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_DEFAULT_REGION, "
                       "AWS_ENDPOINT_URL, FSSPEC_GCS) become ingest's environment, for an "
                       "s3:// or gs:// --dataset (default: dec-data-credentials)")
    group.add_argument("--data-pvc", metavar="NAME[:SUBPATH]", type=_from_dag("parse_data_pvc"),
                       help="PersistentVolumeClaim holding the data, mounted on the ingest pod "
                       "at /mnt/dec-data; the data set is SUBPATH inside it (an .npz, or a "
                       "folder of IDX or PNG files)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def _from_dag(name: str):
    """A parser from ``pipelines.dag`` as an argparse type, imported only when the option is
    used (kfp is slow to import); its ``ValueError`` becomes argparse's one error line, which
    names the option.
    """
    def parse(text: str):
        from pipelines import dag

        owner, _, attribute = name.rpartition(".")
        function = getattr(getattr(dag, owner) if owner else dag, attribute)
        try:
            return function(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit status 2), like every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {short_text(message, 500)} (see {self.prog} --help)"
                     "\n")


def make_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="dec-pipeline",
        description="Deep Embedded Clustering as a Kubeflow Pipelines DAG tracked in MLflow.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and the "
                        "summary")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the whole DAG on this machine (kfp.local)",
                              description="Run the pipeline locally with kfp.local; MLflow "
                              "defaults to SQLite in the work dir.")
    _add_config_options(run)
    run.add_argument("--work-dir", default="work", help="outputs, checkpoints and the default "
                     "MLflow store (default: ./%(default)s)")
    run.add_argument("--mlflow-uri", help="tracking URI (default: $MLFLOW_TRACKING_URI, else "
                     "sqlite:///<work-dir>/mlflow.db)")
    run.add_argument("--experiment", default=names.DEFAULT_EXPERIMENT,
                     help="MLflow experiment (default: %(default)s)")
    run.add_argument("--model-name", default=names.DEFAULT_MODEL_NAME,
                     help="registered model name (default: %(default)s)")
    run.add_argument("--summary", metavar="FILE.json", help="write the run summary as JSON")
    run.add_argument("--runner", choices=("subprocess", "docker"), default="subprocess",
                     help="subprocess: every step in this Python environment (default); "
                     "docker: every step in a container of --image, as its non-root user, "
                     "through Docker or podman's Docker API at $DOCKER_HOST")
    run.add_argument("--image", default=None, help="image of every step with --runner docker "
                     "(default: the CPU image 'make image-cpu' builds)")
    _add_mode_options(run, cache=False)
    run.set_defaults(func=cmd_run)

    comp = commands.add_parser("compile", help="compile the DAG to a KFP package (YAML)")
    _add_config_options(comp)
    comp.add_argument("--output", required=True, metavar="FILE.yaml")
    comp.add_argument("--model-name", default=names.DEFAULT_MODEL_NAME,
                      help="registered model name (default: %(default)s)")
    _add_mode_options(comp)
    _add_placement_options(comp)
    comp.set_defaults(func=cmd_compile)

    pred = commands.add_parser("predict", help="cluster images with a registered model")
    pred.add_argument("--model", required=True, metavar="MODEL_URI",
                      help=f"e.g. models:/{names.DEFAULT_MODEL_NAME}@champion")
    pred.add_argument("--input", required=True, help=".npz with x, a directory of IDX files, or "
                      "a directory of PNG images (the CSV then names each file)")
    pred.add_argument("--output", required=True, metavar="FILE.csv")
    pred.add_argument("--mlflow-uri", help="tracking URI (default: $MLFLOW_TRACKING_URI)")
    pred.set_defaults(func=cmd_predict)

    serve = commands.add_parser("serve", help="serve a registered model over HTTP (MLflow's "
                                "model server, with this environment)")
    serve.add_argument("--model", required=True, metavar="MODEL_URI",
                       help=f"e.g. models:/{names.DEFAULT_MODEL_NAME}@champion")
    serve.add_argument("--port", type=int, default=5001, help="(default: %(default)s)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: "
                       "%(default)s; 0.0.0.0 for every interface)")
    serve.add_argument("--workers", type=_positive_int, default=1, help="server worker "
                       "processes (default: %(default)s)")
    serve.add_argument("--mlflow-uri", help="tracking URI (default: $MLFLOW_TRACKING_URI)")
    serve.set_defaults(func=cmd_serve)

    sub = commands.add_parser("submit", help="submit one run to a Kubeflow Pipelines cluster")
    _add_config_options(sub)
    _add_kfp_options(sub)
    sub.add_argument("--run-name", default=None)
    _add_mode_options(sub)
    sub.set_defaults(func=cmd_submit)

    sched = commands.add_parser("schedule", help="create a recurring run (retraining)")
    _add_config_options(sched)
    _add_kfp_options(sched)
    sched.add_argument("--cron", required=True,
                       help="KFP's six-field cron, e.g. '0 0 3 * * *' (03:00 daily)")
    sched.add_argument("--job-name", default="dec-retrain")
    _add_mode_options(sched, schedule=True)
    sched.set_defaults(func=cmd_schedule)

    conf = commands.add_parser("config", help="inspect the configuration")
    conf_commands = conf.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = conf_commands.add_parser("show", help="print the effective configuration",
                                    description="Print the configuration that run or compile "
                                    "would use with the same options.")
    _add_config_options(show)
    show.add_argument("--format", choices=("text", "yaml", "toml"), default="text",
                      help="text: one KEY = VALUE line per setting; yaml or toml: a "
                      "documented file that --config reads back (default: %(default)s)")
    show.set_defaults(func=cmd_config_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    setup_logging("DEBUG" if args.verbose else "WARNING" if args.quiet else "INFO")
    try:
        with stop_on_signals():
            return args.func(args)
    except DecError as error:
        # One line, whatever a library put in the message.
        print(f"error: {short_text(str(error).replace(chr(10), ' '), 2000)}", file=sys.stderr)
        return 1
    except Interrupted as stop:
        detail = stop.detail
        print(f"interrupted by {signal.Signals(stop.signum).name}"
              + (f": {detail}" if detail else "")
              + ("; run the same command again to resume (pretraining restarts from its last "
                 "checkpoint)" if args.command == "run" else ""), file=sys.stderr)
        return stop.exit_status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
