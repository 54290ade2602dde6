"""``manage.py supervisor status --json``: the processes as JSON, with ``status``'s exit code."""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..protocol import RUNNING_STATES
from .info import ProcessInfo
from .supervisor import Supervisor

#: supervisorctl's ``status`` exit code when a selected process is not running (LSB).
NOT_RUNNING = 3


def _plain(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return value


def record(info: ProcessInfo) -> dict[str, Any]:
    """One process as a JSON object: ``ProcessInfo``'s fields and its ``namespec``."""
    fields = {key: _plain(value) for key, value in dataclasses.asdict(info).items()}
    return {"namespec": info.namespec, **fields}


def exit_code(infos: Iterable[ProcessInfo]) -> int:
    """``status``'s exit code: 3 when one of the processes is not running, else 0."""
    return NOT_RUNNING if any(i.state not in RUNNING_STATES for i in infos) else 0


def status_json(client: Supervisor, names: Sequence[str]) -> tuple[str, int]:
    """Return the selected processes (all without ``names``) as a JSON array, and the exit code.

    An unknown name raises ``NoSuchProcess``; no supervisord, ``NotRunning``.
    """
    infos = client.status(*names, stats=True)
    return json.dumps([record(info) for info in infos], indent=2), exit_code(infos)


def status_table(client: Supervisor, names: Sequence[str]) -> tuple[str, int]:
    """``status --stats``: supervisorctl's columns plus CPU % and resident memory."""
    from .stats import human_bytes

    infos = client.status(*names, stats=True)
    rows = [
        (
            info.namespec,
            info.state,
            "-" if info.cpu_percent is None else f"{info.cpu_percent:.1f}%",
            human_bytes(info.rss),
            info.description,
        )
        for info in infos
    ]
    header = ("NAME", "STATE", "CPU", "RSS", "DESCRIPTION")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        lines.append("  ".join([*cells, row[4]]).rstrip())
    return "\n".join(lines), exit_code(infos)
