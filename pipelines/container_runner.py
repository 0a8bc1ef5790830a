"""``run --runner docker``: every step in the built image, as on a cluster, on this machine.

kfp.local's ``DockerRunner`` starts one container per task from the image the compiled task
names, with the executor command the backend would run. The containers share nothing with this
process but the work dir (artifacts, the SQLite tracking store, checkpoints), mounted at the
same path, and the host's network, so that a tracking or object-store server on loopback is
reachable. They run as the image's own non-root user (uid 10001), so the work dir is made
writable to them through its group: the containers join the caller's group, and the folders
they write into are made group-writable (setgid, so new entries keep that group).

Works against Docker or podman's Docker API (``DOCKER_HOST``; ``source docker/podman-env.sh
service``).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from urllib.parse import urlparse

from dec_lib.errors import DecError

PASSED_ENV = ("DEC_LOG_LEVEL", "DEC_STALE_RUN_SECONDS",
              "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
              "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION",
              "AWS_DEFAULT_REGION")
"""Variables handed to the containers as they are; with every ``MLFLOW_*`` one. Paths on this
machine (``DEC_MNIST_PATH``, CA bundles) are not: they do not exist inside the image. The steps
report errors, MLflow runs and progress on their output (``dec_lib.runtime.events``), which
``run_container`` relays to the CLI, so nothing about that needs passing."""

SHARED_DIRS = ("kfp-outputs", "checkpoints", "mlartifacts", "logs")
"""The work dir's folders the containers write into (with the work dir itself, for SQLite's
journal)."""


def docker_runner(image: str, work_dir: Path, tracking_uri: str, data: Path | None = None):
    """A ``kfp.local.DockerRunner`` for ``image``, after checking what can be checked first.

    The engine must answer and hold ``image`` (nothing is pulled: an image that is not built
    here would come from a registry, which is not what a local check of the images is for); a
    SQLite or file tracking store must lie in ``work_dir``, the only folder the containers
    write to. ``data``, a local data set's absolute path, is mounted read-only at that path.
    """
    import docker
    from kfp import local

    _check_tracking_store(tracking_uri, work_dir)
    client = _engine()
    try:
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            raise DecError(f"--image {image}: no such image in the container engine; build it "
                           "with 'make image-cpu' (see the README)") from None
    finally:
        client.close()
    _share_with_containers(work_dir)
    _report_exit_codes()
    environment = {k: v for k, v in os.environ.items()
                   if k in PASSED_ENV or k.startswith("MLFLOW_")}
    environment["TF_CPP_MIN_LOG_LEVEL"] = "2"
    mounts = [docker.types.Mount(target=str(work_dir), source=str(work_dir), type="bind")]
    if data is not None and not data.is_relative_to(work_dir):
        mounts.append(docker.types.Mount(target=str(data), source=str(data), type="bind",
                                         read_only=True))
    return local.DockerRunner(
        environment=environment,
        mounts=mounts,
        network_mode="host",
        group_add=[str(os.getgid())],
    )


def _engine():
    """A client of the engine at ``DOCKER_HOST`` (or Docker's default socket), or one line."""
    import docker

    where = os.environ.get("DOCKER_HOST") or "Docker's default socket"
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        raise DecError(f"--runner docker: no container engine answers at {where} ({error}); "
                       "start Docker, or podman's API with "
                       "'source docker/podman-env.sh service'") from None
    return client


def _check_tracking_store(uri: str, work_dir: Path) -> None:
    parsed = urlparse(uri)
    if parsed.scheme not in ("sqlite", "file", ""):
        return  # a server: reached over the host's network
    path = Path(uri[len("sqlite:///"):] if parsed.scheme == "sqlite" else parsed.path or uri)
    if not path.is_absolute() or not path.resolve().is_relative_to(work_dir):
        raise DecError(f"--mlflow-uri {uri}: with --runner docker a local tracking store must "
                       f"be an absolute path inside --work-dir ({work_dir}), the only folder "
                       "the containers share; or use a tracking server")


def _share_with_containers(work_dir: Path) -> None:
    """Let the image's user write where the steps write, through the caller's group."""
    def open_to_group(path: Path) -> None:
        mode = path.stat().st_mode
        wanted = stat.S_IRWXG | (stat.S_ISGID if path.is_dir() else 0)
        if mode & wanted != wanted:
            os.chmod(path, mode | wanted if path.is_dir() else mode | stat.S_IRGRP | stat.S_IWGRP)

    open_to_group(work_dir)
    for name in SHARED_DIRS:
        top = work_dir / name
        top.mkdir(exist_ok=True)
        open_to_group(top)
        if name in ("checkpoints", "mlartifacts"):
            # Later runs add entries to existing folders (checkpoints are replaced atomically,
            # artifacts only added), so the folders need group write, not the files in them.
            for folder, subfolders, _ in os.walk(top):
                for sub in subfolders:
                    if not os.path.islink(os.path.join(folder, sub)):
                        open_to_group(Path(folder, sub))
    for db in work_dir.glob("mlflow.db*"):
        open_to_group(db)


def _report_exit_codes() -> None:
    """Make kfp.local report a container's real exit status.

    kfp 2.17's ``run_docker_container`` starts containers with ``auto_remove=True`` and, when
    the container is gone before ``wait`` (podman removes it as soon as it exits), reports exit
    status 0: a failed step passes for a successful one and its last log lines are lost. This
    replacement keeps the container until its status is read, and removes it afterwards, also
    when interrupted, so a stopped run leaves no container behind.
    """
    from kfp.local import docker_task_handler

    docker_task_handler.run_docker_container = run_container


def run_container(client, image: str, command: list[str], volumes: dict, **run_args) -> int:
    """Run ``command`` in ``image`` to the end, streaming its output; its exit status.

    The output goes to ``sys.stdout``, which ``dec-pipeline run`` reads for the steps' events;
    it comes in chunks, not lines, which the reader reassembles.

    Parameters
    ----------
    client : docker.DockerClient
        The engine.
    image : str
        The image to run.
    command : list of str
        The executor command.
    volumes : dict
        Volumes, as kfp.local passes them.
    **run_args
        The rest of ``containers.run``'s arguments (environment, mounts, user groups).

    Returns
    -------
    int
        The container's exit status.
    """
    container = client.containers.run(image=image, command=command, volumes=volumes,
                                      detach=True, stdout=True, stderr=True, **run_args)
    try:
        for chunk in container.logs(stream=True, follow=True):
            print(chunk.decode(errors="replace"), end="")
        return int(container.wait()["StatusCode"])
    finally:
        with contextlib.suppress(Exception):  # already gone: nothing is left to clean up
            container.remove(force=True)
