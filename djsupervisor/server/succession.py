"""Start after a previous instance of the project's supervisord that is still shutting down.

``manage.py supervisor shutdown`` returns once supervisord has begun stopping; slow
programs (Celery's warm shutdown) can keep it alive for many seconds more. A start in
that window waits for it to finish, up to the longest ``stopwaitsecs`` of the
configuration (after which supervisord kills what is left) plus a margin.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from .. import config
from ..errors import NotRunning, StartError
from . import instance

#: supervisord's own default ``stopwaitsecs``.
DEFAULT_STOPWAITSECS = 10
#: Beyond ``stopwaitsecs``: SIGKILL, reaping and supervisord's last loop rounds.
MARGIN = 5.0


def longest_stopwaitsecs(merged: config.Merged) -> float:
    """The longest ``stopwaitsecs`` of any process in ``merged`` (supervisord's default 10)."""
    waits = []
    for name, values in merged.sections.items():
        if name.startswith(config.PROCESS_PREFIXES):
            with contextlib.suppress(ValueError):
                waits.append(float(values.get("stopwaitsecs", DEFAULT_STOPWAITSECS)))
    return max(waits, default=float(DEFAULT_STOPWAITSECS))


def _pid(pidfile: str | None) -> str:
    with contextlib.suppress(OSError, ValueError, TypeError):
        return str(int(Path(pidfile or "").read_text()))
    return "unknown"


def wait_for_previous(
    runtime_dir: Path,
    lock_path: Path,
    load: Callable[[], config.Merged],
    ping: Callable[[], None],
    *,
    margin: float = MARGIN,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once no shutting-down instance holds the lock; raise ``StartError`` if it lasts.

    ``ping`` raises ``NotRunning`` unless supervisord answers normally. An instance that
    answers normally is left to the usual "already running" refusal. ``load`` gives the
    configuration, read only if there is a previous instance to wait for (rendering it
    is tens of milliseconds with many programs, and a start usually has none).
    """
    if not instance.held(runtime_dir, lock_path):
        return
    merged = load()
    timeout = longest_stopwaitsecs(merged) + margin
    deadline = time.monotonic() + timeout
    while instance.held(runtime_dir, lock_path):
        try:
            ping()
            # Running normally (again: one whose runtime directory was deleted answers
            # once it has made it anew, within seconds): the usual refusal follows.
            return
        except NotRunning:
            pass  # shutting down, or its control channel is not there (yet)
        if time.monotonic() >= deadline:
            pid = _pid(merged.sections.get("supervisord", {}).get("pidfile"))
            raise StartError(
                f"the previous supervisord of this project (pid {pid}) is still shutting "
                f"down after {timeout:g} s; try again once it has stopped"
            )
        sleep(0.05)
