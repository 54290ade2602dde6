"""Watching a supervisord process from outside: alive, gone, and why it exited."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

#: How often waits look again.
POLL = 0.02


def pid_alive(pid: int) -> bool:
    """Tell whether ``pid`` runs (a zombie, already dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def wait_for(predicate: Callable[[], bool], deadline: float) -> bool:
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)
    return True


def exit_reason(code: int | None, console_log: Path | None, what: str, offset: int = 0) -> str:
    """The last line supervisord printed before it exited (the CommandError message)."""
    last = ""
    if console_log is not None:
        with contextlib.suppress(OSError), console_log.open("rb") as stream:
            stream.seek(offset)
            lines = stream.read().decode("utf-8", "replace").splitlines()
            last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    if last.startswith("CommandError: "):
        return last[len("CommandError: ") :]
    detail = f": {last}" if last else ""
    return f"{what} (exit status {code}){detail}"
