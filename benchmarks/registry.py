"""The benchmark registry: what a benchmark is, what it returns, and how one is run.

An area module (``benchmarks/config.py``, ``benchmarks/runtime.py``, ...) registers
functions with ``@benchmark("area.name", "what it measures")``; each gets a fresh
``Context`` and returns ``Figure`` rows. To add an area, add its module to ``AREAS``.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .harness import Processes

#: Area modules, imported in this order; their benchmarks run in registration order.
AREAS = ("config", "runtime", "orchestration", "console", "autoreload", "api", "speed", "scale")

Unit = Literal["s", "%", "MiB", "x"]


@dataclass(frozen=True)
class Target:
    """What a figure should achieve: ``ours`` at most ``limit``, or ``ours/peer`` at most it."""

    kind: Literal["ours", "ratio"]
    limit: float

    def met(self, figure: Figure) -> bool | None:
        value = figure.ours if self.kind == "ours" else figure.ratio
        return None if value is None else value <= self.limit

    def describe(self, unit: Unit) -> str:
        if self.kind == "ratio":
            return f"ratio <= {self.limit:g}"
        return f"<= {format_value(self.limit, unit)}"


@dataclass(frozen=True)
class Figure:
    """One table row: our figure beside its peer's, measured in the same run."""

    label: str
    unit: Unit
    ours: float
    peer: float | None
    peer_name: str
    target: Target | None = None
    #: Raw measurements, for --json: e.g. {"ours": [...], "peer": [...]}.
    samples: dict[str, list[float]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.peer is None or self.peer <= 0:
            return None
        return self.ours / self.peer


@dataclass
class Context:
    """What a benchmark gets: the mode, a private temp dir, and a process tracker."""

    quick: bool
    workdir: Path
    procs: Processes

    def reps(self, quick: int, full: int) -> int:
        """Pick a repetition count for the current mode."""
        return quick if self.quick else full


Runner = Callable[[Context], list[Figure]]


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    run: Runner


@dataclass
class Outcome:
    """A benchmark's figures, or the error that stopped it."""

    benchmark: Benchmark
    figures: list[Figure]
    seconds: float
    error: str | None = None
    #: The traceback behind ``error``.
    detail: str | None = None


_REGISTRY: dict[str, Benchmark] = {}


def benchmark(name: str, description: str) -> Callable[[Runner], Runner]:
    """Register ``func`` under ``name`` ("area.what"); names are unique."""

    def register(func: Runner) -> Runner:
        if name in _REGISTRY:
            raise ValueError(f"benchmark {name!r} registered twice")
        _REGISTRY[name] = Benchmark(name, description, func)
        return func

    return register


def load() -> list[Benchmark]:
    """Import every area module; return all benchmarks in run order."""
    for area in AREAS:
        importlib.import_module(f"{__package__}.{area}")
    return list(_REGISTRY.values())


def select(benchmarks: Iterable[Benchmark], only: Iterable[str]) -> list[Benchmark]:
    """Keep the benchmarks named in ``only``: full names or whole areas ("runtime")."""
    wanted = [name.strip() for name in only if name.strip()]
    everything = list(benchmarks)
    if not wanted:
        return everything
    known = {b.name for b in everything} | {b.name.split(".", 1)[0] for b in everything}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise KeyError(
            f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return [b for b in everything if b.name in wanted or b.name.split(".", 1)[0] in wanted]


def run(bench: Benchmark, *, quick: bool) -> Outcome:
    """Run one benchmark in its own temp dir; kill whatever it started, even on failure."""
    workdir = Path(tempfile.mkdtemp(prefix="djsb-"))
    procs = Processes(workdir / "logs")
    started = time.monotonic()
    try:
        figures = bench.run(Context(quick=quick, workdir=workdir, procs=procs))
        return Outcome(bench, figures, time.monotonic() - started)
    except Exception as error:  # one failed row must not hide the others
        message = f"{type(error).__name__}: {error}"
        detail = traceback.format_exc()
        return Outcome(bench, [], time.monotonic() - started, error=message, detail=detail)
    finally:
        procs.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def format_value(value: float | None, unit: Unit) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.3f} s"
    if unit == "%":
        return f"{value:.2f} %"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:.1f} MiB"
