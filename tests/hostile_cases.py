"""Hostile inputs for every ``dec-pipeline`` command, and a driver that runs one family of them.

``python tests/hostile_cases.py FAMILY ROOT RESULT.json [MODEL_URI TRACKING_URI]`` prepares the
files under ROOT, calls ``pipelines.cli.main`` once per case in this one process (as a user's
shell would run the command, less the interpreter start), and writes for each case its exit
status, what it printed to stderr and its wall time, plus the peak memory of this process
(``VmHWM``) and of its children (the ``kfp.local`` steps, ``ru_maxrss``). One process per
family, so the peak memory of a family bounds each of its cases.
``tests/test_hostile_inputs.py`` runs the families and asserts on the results.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import resource
import signal
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens
KFP = ["--host", UNREACHABLE]


def _bomb_npz(path: Path, n_bytes: int) -> None:
    """An .npz whose one uint8 array expands to ``n_bytes`` (about 1 MB per GB compressed),
    written in chunks so that making it costs no memory."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (n_bytes // 784, 28, 28)})
    chunk = bytes(16 * 1024**2)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf, \
            zf.open("x.npy", "w", force_zip64=True) as member:
        member.write(header.getvalue())
        left = (n_bytes // 784) * 784
        while left:
            member.write(chunk[:min(left, len(chunk))])
            left -= min(left, len(chunk))


def _png(path: Path, width: int, height: int) -> None:
    from PIL import Image

    Image.new("L", (width, height), 128).save(path)


def prepare(root: Path) -> dict[str, str]:
    """Every hostile file, made once under ``root`` (the families share them); returns them by
    name."""
    index = root / "files.json"
    if index.exists():
        return json.loads(index.read_text())
    root.mkdir(parents=True, exist_ok=True)
    f: dict[str, Path] = {}

    def text(name: str, content: str) -> None:
        f[name] = root / name
        f[name].write_text(content)

    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    text("laughs.yaml", "\n".join(lines) + "\npretrain: {epochs: *a8}\n")
    text("deep.yaml", "[" * 50_000 + "]" * 50_000 + "\n")
    text("deep.toml", "x = " + "[" * 50_000 + "]" * 50_000 + "\n")
    text("twice.yaml", "pretrain:\n  epochs: 5\n  epochs: 50\n")
    text("big.yaml", "# padding\n" * 40_000)
    text("long-value.yaml", "pretrain: {optimizer: " + "x" * 200_000 + "}\n")
    text("long-key.toml", "[pretrain]\n" + "k" * 200_000 + " = 1\n")
    f["fifo.yaml"] = root / "fifo.yaml"
    os.mkfifo(f["fifo.yaml"])

    f["fifo.npz"] = root / "fifo.npz"
    os.mkfifo(f["fifo.npz"])
    (root / "loop-a.npz").symlink_to(root / "loop-b.npz")
    (root / "loop-b.npz").symlink_to(root / "loop-a.npz")
    f["loop.npz"] = root / "loop-a.npz"
    f["jpegs"] = root / "jpegs"
    f["jpegs"].mkdir()
    for i in range(3):
        (f["jpegs"] / f"{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(64))
    f["bomb.npz"] = root / "bomb.npz"
    _bomb_npz(f["bomb.npz"], 1_070_000_000)  # 1.07 GB of uint8 in about 1 MB
    f["negative.npz"] = root / "negative.npz"
    np.savez(f["negative.npz"], x=np.zeros((40, 28, 28), np.uint8), y=np.r_[np.arange(39), -1])
    f["few.npz"] = root / "few.npz"
    np.savez(f["few.npz"], x=np.zeros((5, 28, 28), np.uint8))
    f["rgb.npz"] = root / "rgb.npz"
    np.savez(f["rgb.npz"], x=np.zeros((4, 28, 28, 3), np.uint8))
    f["png1x1"] = root / "png1x1"
    f["png1x1"].mkdir()
    _png(f["png1x1"] / "dot.png", 1, 1)
    f["digits.npz"] = root / "digits.npz"
    np.savez(f["digits.npz"], x=np.zeros((4, 28, 28), np.uint8))
    f["not-a-db.db"] = root / "not-a-db.db"
    f["not-a-db.db"].write_bytes(gzip.compress(b"not sqlite"))
    f["a-file"] = root / "a-file"
    f["a-file"].write_text("a regular file\n")
    names = {k: str(v) for k, v in f.items()}
    index.write_text(json.dumps(names))
    return names


def cases(f: dict[str, str], work: str, model: str = "", store: str = "") -> dict:
    """Family -> [(case id, argv)]. ``work`` is a folder for each case's work dir."""
    def run(case: str, *args: str) -> list[str]:
        return ["run", "--preset", "quick", "--work-dir", f"{work}/{case}", *args]

    def everywhere(case: str, *args: str, data: bool = True) -> list[tuple[str, list[str]]]:
        """The same options given to each command that takes configuration."""
        return [
            (f"config-show-{case}", ["config", "show", *args]),
            (f"run-{case}", run(case, *args)),
            (f"compile-{case}", ["compile", "--output", f"{work}/{case}.yaml", *args]),
            (f"submit-{case}", ["submit", *KFP, *args]),
            (f"schedule-{case}", ["schedule", *KFP, "--cron", "0 0 3 * * *", *args]),
        ]

    config_files = ["laughs.yaml", "deep.yaml", "deep.toml", "twice.yaml", "big.yaml",
                    "long-value.yaml", "long-key.toml", "fifo.yaml"]
    settings = {
        "seed-2-64": ["--seed", "18446744073709551616"], "seed-negative": ["--seed", "-1"],
        "seed-not-a-number": ["--seed", "abc"],
        "one-cluster": ["--set", "dec.n_clusters=1"],
        "epochs-1e11": ["--set", "pretrain.epochs=99999999999"],
        "no-hidden-layers": ["--set", "autoencoder.hidden_dims=[]"],
        "huge-layer": ["--set", "autoencoder.hidden_dims=[100000000]"],
        "million-digits": ["--set", "dec.maxiter=" + "9" * 1_000_000],
        "unknown-key": ["--set", "pretrain.epochz=3"],
    }
    names = {"slash": "team/dec", "quote": "it's", "colon": "a:b", "empty": "",
             "dot-dot": "..", "too-long": "m" * 300, "newline": "a\nb"}

    def named(case: str, name: str) -> list[tuple[str, list[str]]]:
        option = [f"--model-name={name}"]
        return [(f"run-{case}", run(case, *option)),
                (f"compile-{case}", ["compile", "--output", f"{work}/{case}.yaml", *option]),
                (f"submit-{case}", ["submit", *KFP, *option]),
                (f"schedule-{case}", ["schedule", *KFP, "--cron", "0 0 3 * * *", *option])]

    data = ["fifo.npz", "loop.npz", "jpegs", "bomb.npz", "negative.npz", "few.npz",
            "/dev/zero", "a-file"]
    predict = ["predict", "--model", model or "models:/dec-mnist@champion",
               *(["--mlflow-uri", store] if store else [])]
    out = f"{work}/predictions.csv"
    uris = {"read-only-sqlite": "sqlite:////sys/mlflow.db",
            "not-a-database": f"sqlite:///{f['not-a-db.db']}",
            "directory-as-database": f"sqlite:///{work}",
            "unknown-scheme": "ftp://example.com/mlflow"}
    return {
        "config-files": [c for name in config_files
                         for c in everywhere(name, "--config", f[name])],
        "settings": [c for case, args in settings.items() for c in everywhere(case, *args)],
        "model-names": [c for case, name in names.items() for c in named(case, name)],
        "data-files": [(f"run-{Path(d).name}", run(Path(d).name, "--dataset", f.get(d, d)))
                       for d in data]
        + [(f"predict-{Path(d).name}", [*predict, "--input", f.get(d, d), "--output", out])
           for d in data if d not in ("negative.npz", "few.npz")],
        "tracking-uris": [(f"run-{case}", run(case, "--mlflow-uri", uri))
                          for case, uri in uris.items()]
        + [(f"predict-{case}", ["predict", "--model", "models:/dec-mnist@champion",
                                "--mlflow-uri", uri, "--input", f["digits.npz"],
                                "--output", out]) for case, uri in uris.items()]
        + [(f"{cmd}-unknown-scheme", [cmd, *KFP, "--mlflow-uri", uris["unknown-scheme"],
                                      *(["--cron", "0 0 3 * * *"] if cmd == "schedule" else [])])
           for cmd in ("submit", "schedule")],
        "predict": [
            ("predict-no-such-model", [*predict[:2], "models:/no-such-model@champion",
                                       *predict[3:], "--input", f["digits.npz"],
                                       "--output", out]),
            ("predict-no-such-run", [*predict[:2], "runs:/0123456789abcdef/model",
                                     *predict[3:], "--input", f["digits.npz"],
                                     "--output", out]),
            ("predict-output-under-a-file", [*predict, "--input", f["digits.npz"],
                                             "--output", f"{f['a-file']}/out.csv"]),
            ("predict-output-read-only", [*predict, "--input", f["digits.npz"],
                                          "--output", "/sys/dec-hostile.csv"]),
            ("predict-output-is-a-directory", [*predict, "--input", f["digits.npz"],
                                               "--output", work]),
            ("predict-rgb", [*predict, "--input", f["rgb.npz"], "--output", out]),
            ("predict-1x1-png", [*predict, "--input", f["png1x1"], "--output", out]),
        ],
        "unreachable-server": [
            ("predict-unreachable-server", ["predict", "--model", "models:/dec-mnist@champion",
                                            "--mlflow-uri", UNREACHABLE, "--input",
                                            f["digits.npz"], "--output", out]),
        ],
    }


def _peak_mb() -> float:
    """This process's peak resident memory and its children's (the steps), in MB.

    Our own from ``VmHWM``: Linux keeps ``ru_maxrss`` across ``execve``, so this process's would
    start at whatever the forking parent (pytest, with TensorFlow loaded) held. The children's
    ``ru_maxrss`` is at worst this process's size when it forked them: an upper bound.
    """
    own_kb = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                own_kb = int(line.split()[1])
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own_kb, children_kb) / 1024


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout


def run_family(family: str, root: Path, result: Path, model: str = "", store: str = "",
               limit: int = 120) -> None:
    files = prepare(root / "files")
    work = root / "work"
    work.mkdir(parents=True, exist_ok=True)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from dec_lib.runtime.progress import setup_logging
    from pipelines.cli import main

    setup_logging()  # log lines go to the real stderr; a case's captured stderr is its errors

    records = []
    signal.signal(signal.SIGALRM, _alarm)
    for case, argv in cases(files, str(work), model, store)[family]:
        stderr, stdout = io.StringIO(), io.StringIO()
        started = time.perf_counter()
        signal.alarm(limit)  # a case that would train instead of failing: stop it
        try:
            with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
                try:
                    status = main(argv)
                except SystemExit as exit_:  # argparse
                    status = exit_.code
                except _Timeout:
                    status = "timeout"
                except BaseException as error:  # what a user would see, as a traceback
                    import traceback

                    traceback.print_exc(file=stderr)
                    status = f"raised {type(error).__name__}"
        finally:
            signal.alarm(0)
        records.append({"case": case, "argv_head": [a[:200] for a in argv[:6]],
                        "status": status, "seconds": round(time.perf_counter() - started, 2),
                        "stderr": stderr.getvalue()[-20_000:],
                        "work_dir": str(work / case.split("-", 1)[1])
                        if case.startswith("run-") else ""})
    result.write_text(json.dumps({"family": family, "peak_mb": round(_peak_mb()),
                                  "cases": records}, indent=1))


if __name__ == "__main__":
    run_family(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), *sys.argv[4:6])
