"""Child processes that a test interrupts with Ctrl-C (SIGINT).

A shell that starts the test run in the background (without job control) sets SIGINT to
"ignore", children inherit that, and Python then never raises KeyboardInterrupt: a child a test
means to interrupt gets SIGINT's default disposition back before it starts.
"""

from __future__ import annotations

import signal
import subprocess


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def popen_interruptible(args, **kwargs) -> subprocess.Popen:
    """``subprocess.Popen`` of a child that Ctrl-C reaches whatever the test run inherited."""
    return subprocess.Popen(args, preexec_fn=_sigint_default, **kwargs)


def interrupt(proc: subprocess.Popen, *, within: float):
    """Send ``proc`` SIGINT and wait at most ``within`` seconds for it: its (stdout, stderr).
    A child still running then is killed, and ``subprocess.TimeoutExpired`` raised."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
