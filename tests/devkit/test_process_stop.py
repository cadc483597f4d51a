"""Stopping child processes: SIGTERM first, SIGKILL only after the grace period."""

from __future__ import annotations

import subprocess
import sys
import time

from tokenfleet_devkit.process_stop import stop_gracefully

POLITE = "import time; print('up', flush=True); time.sleep(60)"
STUBBORN = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " + POLITE


def _start(code: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "up\n"  # handlers installed
    return process


def test_a_process_that_honours_sigterm_ends_by_it() -> None:
    process = _start(POLITE)
    stop_gracefully(process, grace_s=10)
    assert process.returncode == -15  # SIGTERM, not SIGKILL


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period() -> None:
    process = _start(STUBBORN)
    started = time.monotonic()
    stop_gracefully(process, grace_s=0.5)
    assert process.returncode == -9
    assert time.monotonic() - started >= 0.5
