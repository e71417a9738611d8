"""How much memory the demo's process trees take, sampled in a background thread."""

from __future__ import annotations

import os
import threading
from typing import Iterable

import psutil

from apportion.stack.processes import ProcessTree


class MemoryMonitor(threading.Thread):
    """Samples the total memory of the process trees and of this process every ``interval``
    seconds: RSS each time, PSS every ``pss_every``-th time (reading it costs a few ms per
    process). RSS counts the pages forked processes share once per process, so its sum is
    an upper bound; PSS splits shared pages between their sharers."""

    def __init__(self, trees: Iterable[ProcessTree], interval: float = 1.0, pss_every: int = 3) -> None:
        super().__init__(name="memory-monitor", daemon=True)
        self.trees = list(trees)
        self.interval = interval
        self.pss_every = pss_every
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_processes = 0
        self.samples = 0
        self.phase = "start-up"  # what the demo is doing; the peak remembers it
        self.peak_phase = ""
        self._stop_event = threading.Event()

    def sample(self, with_pss: bool = True) -> int:
        """Record one sample; the total RSS now."""
        procs = {p.pid: p for tree in self.trees for p in tree.processes()}
        procs.setdefault(os.getpid(), psutil.Process())
        rss = pss = 0
        for proc in procs.values():
            try:
                rss += proc.memory_info().rss
            except psutil.Error:
                continue
            if with_pss:
                pss += _pss(proc.pid)
        if rss > self.peak_rss:
            self.peak_rss, self.peak_phase = rss, self.phase
        if with_pss:
            self.peak_pss = max(self.peak_pss, pss)
        self.peak_processes = max(self.peak_processes, len(procs))
        self.samples += 1
        return rss

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample(with_pss=self.samples % self.pss_every == 0)
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=5.0)


def _pss(pid: int) -> int:
    """Proportional set size in bytes from /proc (0 where the kernel does not report it)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0

