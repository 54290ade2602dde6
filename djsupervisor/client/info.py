"""What the client reports about processes: ``ProcessInfo`` and ``UpdateResult``."""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ..protocol import HEALTH_KEY, STATES, State


@dataclass(frozen=True)
class ProcessInfo:
    """One process as supervisord sees it (``getProcessInfo``)."""

    name: str
    group: str
    state: State
    pid: int | None
    started_at: datetime.datetime | None
    stopped_at: datetime.datetime | None
    exitstatus: int
    description: str
    stdout_logfile: Path | None
    stderr_logfile: Path | None
    #: The health check's verdict (``starting``, ``healthy``, ``unhealthy``), if it has one.
    health: str | None = None
    #: CPU use of the process and its children (percent of one core), measured by
    #: ``status(stats=True)``; None when not running or not measured.
    cpu_percent: float | None = None
    #: Resident memory of the process and its children, in bytes (as ``cpu_percent``).
    rss: int | None = None

    @property
    def namespec(self) -> str:
        """The name supervisorctl shows: ``name``, or ``group:name`` inside a group."""
        return self.name if self.group == self.name else f"{self.group}:{self.name}"

    @classmethod
    def from_rpc(cls, info: dict[str, Any]) -> ProcessInfo:
        state = str(info["statename"])
        return cls(
            name=str(info["name"]),
            group=str(info["group"]),
            state=cast(State, state if state in STATES else "UNKNOWN"),
            pid=int(info["pid"]) or None,
            started_at=_timestamp(info["start"]),
            stopped_at=_timestamp(info["stop"]),
            exitstatus=int(info["exitstatus"]),
            description=str(info["description"]),
            stdout_logfile=Path(info["stdout_logfile"]) if info["stdout_logfile"] else None,
            stderr_logfile=Path(info["stderr_logfile"]) if info["stderr_logfile"] else None,
            health=str(info[HEALTH_KEY]) if info.get(HEALTH_KEY) else None,
        )


@dataclass(frozen=True)
class UpdateResult:
    """The process groups ``update`` added, changed (restarted) and removed."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


def _timestamp(value: int) -> datetime.datetime | None:
    return datetime.datetime.fromtimestamp(value, datetime.timezone.utc) if value else None


def with_stats(infos: list[ProcessInfo]) -> list[ProcessInfo]:
    """``infos`` with the CPU and memory of the running ones measured."""
    from . import stats

    usage = stats.measure(info.pid for info in infos if info.pid)
    return [
        dataclasses.replace(info, cpu_percent=u.cpu_percent, rss=u.rss)
        if info.pid and (u := usage.get(info.pid)) is not None
        else info
        for info in infos
    ]
