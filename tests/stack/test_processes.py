"""Process trees are followed and stopped whole, with real processes."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import psutil

from apportion.stack.memory import MemoryMonitor
from apportion.stack.processes import clean_environ, free_port, start_process, stop_servers

# A parent with one child in its process group and one in a session of its own (as Airflow's
# task processes are): SIGINT to the group misses the second.
TREE = "sleep 60 & setsid sleep 60 & wait"


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _left_the_group(tree) -> bool:
    """The tree has its three processes and one of them runs in a session of its own."""
    procs = tree.processes()
    try:
        return len(procs) == 3 and any(os.getpgid(proc.pid) != tree.process.pid for proc in procs)
    except ProcessLookupError:
        return False


def test_stop_servers_reaches_a_child_that_left_the_group(tmp_path):
    tree = start_process("tree", ["bash", "-c", TREE], clean_environ(), tmp_path / "tree.log", tmp_path)
    deadline = time.monotonic() + 10
    while not _left_the_group(tree) and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = list(tree.seen.values())
    assert len(seen) == 3 and _left_the_group(tree)
    assert stop_servers([tree], grace=1.0) == []
    assert not any(_alive(proc) for proc in seen)


def test_memory_monitor_counts_the_tree_and_this_process(tmp_path):
    tree = start_process("sleeper", [sys.executable, "-c", "import time; time.sleep(30)"], clean_environ(),
                         tmp_path / "sleeper.log", tmp_path)
    try:
        monitor = MemoryMonitor([tree])
        rss = monitor.sample()
        assert rss > 0 and monitor.peak_rss == rss and monitor.peak_processes == 2
        assert monitor.peak_pss > 0 and monitor.peak_phase == "start-up"
    finally:
        assert stop_servers([tree], grace=1.0) == []


def test_free_port_prefers_the_given_port_and_avoids_a_taken_one():
    port = free_port()
    assert free_port(port) == port
    with socket.socket() as held:
        held.bind(("127.0.0.1", port))
        held.listen()
        assert free_port(port) != port


def test_clean_environ_drops_the_users_airflow_and_mlflow_settings(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__PARALLELISM", "64")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere:5000")
    env = clean_environ()
    assert "AIRFLOW__CORE__PARALLELISM" not in env and "MLFLOW_TRACKING_URI" not in env
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
