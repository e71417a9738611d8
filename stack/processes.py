"""Processes started in sessions of their own, followed through their whole tree, and stopped
together.

Each server starts in its own session (process group); every process of its tree is
remembered while it runs, because Airflow puts each task process in a group of its own, so a
shutdown reaches all of them: SIGINT, then SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import psutil

from apportion.stack.errors import DemoError

HOST = "127.0.0.1"
OUTPUT_ROOT_ENV = "APPORTION_OUTPUT_ROOT"


def free_port(preferred: int | None = None, host: str = HOST) -> int:
    """``preferred`` if nothing listens on it, else a port the OS picks as free."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as sock:
            # As the servers do: a port held only by old connections (TIME_WAIT) counts as free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise DemoError(f"no free TCP port on {host}")



def clean_environ() -> dict[str, str]:
    """This process's environment without Airflow and MLflow settings, so a user's own
    configuration cannot leak into the demo's servers; this Python's scripts folder first on
    PATH, because standalone starts its components as ``airflow`` from PATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))
           and k not in ("AIRFLOW_HOME", "MLFLOW_TRACKING_URI", "MLFLOW_BACKEND_STORE_URI",
                         "MLFLOW_ARTIFACTS_DESTINATION", OUTPUT_ROOT_ENV)}
    scripts = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([scripts, *(p for p in env.get("PATH", "").split(os.pathsep) if p != scripts)])
    return env



def _default_sigint() -> None:
    """In the child before exec: a SIGINT ignored by whoever launched the demo (``cmd &``)
    would stay ignored across exec, and the server could not be interrupted."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class ProcessTree:
    """A process started in its own session (a server, or the Numba warm-up), and every
    process its tree has had. ``url`` and ``health_path`` are set for servers."""

    name: str
    log_path: Path
    process: subprocess.Popen
    url: str | None = None
    health_path: str | None = None
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def processes(self) -> list[psutil.Process]:
        """The live processes of the tree now, also remembered for the shutdown: task
        processes leave the session's process group, orphans leave the tree."""
        try:
            root = psutil.Process(self.process.pid)
            current = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            current = []
        with self._lock:
            for proc in current:
                self.seen.setdefault(proc.pid, proc)
            known = list(self.seen.values())
        return [proc for proc in known if _alive(proc)]

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (``is_running`` also rules out a reused pid)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_process(name: str, cmd: list[str], env: Mapping[str, str], log_path: Path, cwd: Path,
           url: str | None = None, health_path: str | None = None) -> ProcessTree:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(cmd, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=_default_sigint)
    tree = ProcessTree(name=name, log_path=log_path, process=process, url=url, health_path=health_path)
    tree.processes()
    return tree



def stop_servers(servers: Iterable[ProcessTree], grace: float = 10.0, *, also: Iterable[psutil.Process] = (),
                 groups: Iterable[int] = ()) -> list[psutil.Process]:
    """Stop every process the trees have had, the processes ``also`` and the process ``groups``
    (sessions started by another process, e.g. the cluster ``down`` stops) with their
    descendants: SIGINT to each session's group (Airflow standalone stops its components on
    it), SIGTERM to what is left after ``grace`` seconds (LocalExecutor workers ignore SIGINT),
    SIGKILL after 10 more. Returns the processes still alive (none, unless unkillable)."""
    servers = list(servers)
    groups = [*groups, *(server.process.pid for server in servers)]
    procs = {proc.pid: proc for proc in [*(p for server in servers for p in server.processes()), *also,
                                         *_trees_of(groups)]}
    procs = list(procs.values())
    for pgid in groups:
        _signal_group(pgid, signal.SIGINT)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        _, procs = psutil.wait_procs([p for p in procs if _alive(p)], timeout=wait)
        procs = [p for p in procs if _alive(p)]
        if not procs:
            break
        for pgid in groups:
            _signal_group(pgid, sig)
        for proc in procs:
            try:
                proc.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
    else:
        _, procs = psutil.wait_procs(procs, timeout=5.0)
    for server in servers:
        try:
            server.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
    return [p for p in procs if _alive(p)]


def _trees_of(pids: Iterable[int]) -> list[psutil.Process]:
    """The processes ``pids`` and all their descendants that are alive now."""
    found = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            found += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    return found


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass

