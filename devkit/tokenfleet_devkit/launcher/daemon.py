"""Start and stop the launcher as a background process that outlives the CLI call."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tokenfleet_devkit.launcher.runner import LAUNCHED_MARK


def start(kubeconfig: Path, state: Path) -> int:
    stop(kubeconfig, state)
    state.mkdir(parents=True, exist_ok=True)
    log = open(state / "launcher.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokenfleet_devkit.launcher",
            "--kubeconfig",
            str(kubeconfig),
            "--log-dir",
            str(state / "pods"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (state / "launcher.pid").write_text(str(proc.pid))
    return proc.pid


def is_running(state: Path) -> bool:
    pidfile = state / "launcher.pid"
    if not pidfile.exists():
        return False
    try:
        os.kill(int(pidfile.read_text()), 0)
    except (ProcessLookupError, ValueError):
        return False
    return True


def _strays(kubeconfig: Path) -> list[int]:
    """Processes a launcher started for this cluster (found by their environment), if any remain."""
    mark = f"{LAUNCHED_MARK}={kubeconfig}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if mark in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
    return pids


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    return False


def stop(kubeconfig: Path, state: Path, timeout: float = 10.0) -> None:
    pidfile = state / "launcher.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, timeout):
                os.kill(pid, signal.SIGKILL)
        pidfile.unlink(missing_ok=True)
    for pid in _strays(kubeconfig):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
