"""Ctrl-C and ``kill`` for ``dec-pipeline run``: stop the running step, leave no orphan.

``kfp.local`` runs each step as a child process and waits for it. Ctrl-C reaches the whole
terminal process group, step included; ``kill`` (SIGTERM) reaches only the CLI, whose default is
to die on the spot while its step runs on as an orphan and later records the run as its own.
Here both signals are passed on to every process the CLI started (the step marks its MLflow run
KILLED, see ``dec_lib.mlops.tracking.step_run``), anything still alive after a grace period is
killed, and the CLI leaves through ``Interrupted`` so that it can record the run KILLED itself
when no step was running to do it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

GRACE_SECONDS = 20.0
"""How long a step gets to record its end after SIGTERM before it is killed outright."""


class Interrupted(KeyboardInterrupt):
    """The CLI got SIGINT or SIGTERM (a ``KeyboardInterrupt``, so no ``except Exception`` in
    kfp's orchestration swallows it)."""

    def __init__(self, signum: int, pids: list[int] | None = None):
        self.signum = signum
        self.pids = pids or []
        """The processes below the CLI when the signal came: kfp.local's ``sh`` exits at once,
        so its Python step is no longer a descendant by the time the CLI waits for it."""
        self.detail = ""
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_status(self) -> int:
        """128 + the signal number, as a shell reports a process the signal ended: 130, 143."""
        return 128 + self.signum


def descendants(pid: int | None = None) -> list[int]:
    """Every live process below ``pid`` (default: this one), children first, from ``/proc``."""
    parents: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields and fields[0] != b"Z":
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found, queue = [], [pid or os.getpid()]
    while queue:
        children = parents.get(queue.pop(0), [])
        found.extend(children)
        queue.extend(children)
    return found


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait up to ``timeout`` for ``pids`` to exit; returns those still alive."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _alive(pid)]
        if alive:
            time.sleep(0.1)
    return alive


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


@contextmanager
def stop_on_signals(grace: float = GRACE_SECONDS) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM stop the step processes and raise ``Interrupted``.

    The step gets the signal (SIGTERM; SIGINT from a terminal it already has) and ``grace``
    seconds to mark its run; a timer then kills whatever is left, so ``kfp.local``'s wait for
    the step always ends. Further signals are ignored while stopping.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        children = descendants()
        signal_all(children, signal.SIGTERM)
        timer = threading.Timer(grace, lambda: signal_all(
            [pid for pid in children if _alive(pid)] + descendants(), signal.SIGKILL))
        timer.daemon = True
        timer.start()
        raise Interrupted(signum, children)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
