"""CPU and resident memory of running processes, their children included (psutil)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

#: How long CPU use is sampled: long enough to mean something, short enough for a page.
INTERVAL = 0.2


@dataclass(frozen=True)
class Usage:
    """One process tree's CPU use (percent of one core) and resident memory (bytes)."""

    cpu_percent: float
    rss: int


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _cpu_seconds(processes: Iterable[psutil.Process]) -> dict[int, float]:
    seconds: dict[int, float] = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:  # it exited between the two samples
            continue
        seconds[process.pid] = times.user + times.system
    return seconds


def measure(pids: Iterable[int], interval: float = INTERVAL) -> dict[int, Usage]:
    """Sample every pid's process tree over ``interval`` seconds (one wait for all).

    A pid that is gone is left out. CPU is the trees' CPU time over the interval, so a
    child that exits mid-sample does not count negative.
    """
    trees: dict[int, list[psutil.Process]] = {}
    for pid in set(pids):
        try:
            trees[pid] = _tree(pid)
        except psutil.Error:
            continue
    before = {pid: _cpu_seconds(tree) for pid, tree in trees.items()}
    started = time.monotonic()
    if trees and interval > 0:
        time.sleep(interval)
    elapsed = max(time.monotonic() - started, 1e-9)
    usage: dict[int, Usage] = {}
    for pid, tree in trees.items():
        after = _cpu_seconds(tree)
        busy = sum(max(after[p] - before[pid].get(p, after[p]), 0.0) for p in after)
        rss = 0
        for process in tree:
            try:
                rss += process.memory_info().rss
            except psutil.Error:
                continue
        if pid in after:
            usage[pid] = Usage(cpu_percent=round(100.0 * busy / elapsed, 1), rss=rss)
    return usage


def human_bytes(size: int | None) -> str:
    """``123.4 MiB``: a size for people (``-`` for none)."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
