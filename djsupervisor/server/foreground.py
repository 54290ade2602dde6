"""``manage.py supervisor`` with no action: supervisord in this process until it stops.

Waits for a previous instance that is still stopping, takes the instance lock, runs
supervisord's rounds, and with ``--daemonize`` waits until the detached one answers.
How to reach the control channel is given by the caller (``ping``, ``is_up``): the
server side never imports the client side.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from .. import config
from ..config.project import Project, ensure_runtime_dir, merged_sections
from ..errors import StartError
from . import instance, runtime, succession
from .console import Console


def serve(
    project: Project,
    opts: config.Options,
    *,
    daemonize: bool,
    console: Console | None,
    ping: Callable[[], None],
    is_up: Callable[[], bool],
    write: Callable[[str], object],
    validated: config.Merged | None = None,
) -> None:
    """Run supervisord in this process until it shuts down (or detaches).

    ``validated``: the config the caller has just rendered and checked. The first
    round reads it instead of rendering every source again (tens of milliseconds with
    many programs); a reload, and a start that had to wait, render them afresh.
    """
    fresh = [validated] if validated is not None else []

    def load() -> config.Merged:
        return fresh.pop() if fresh else merged_sections(project, opts)

    configfile = str(project.config_file)
    ensure_runtime_dir(project.runtime_dir)
    lock = instance.instance_lock(
        project.runtime_dir,
        project.lock_path,
        f"supervisord is already running for this project ({project.socket_path}); "
        "see 'manage.py supervisor status', or stop it with 'manage.py supervisor shutdown'",
    )
    # Right after 'shutdown' the previous instance may still be stopping programs (if
    # so, it takes the validated config, and the first round renders afresh).
    succession.wait_for_previous(project.runtime_dir, project.lock_path, load, ping)
    with lock, runtime.process_state():
        try:
            reason = runtime.run_rounds(
                load,
                configfile,
                daemonize=daemonize,
                hangup_stops=runtime.has_terminal(),
                console=console,
                project_dir=str(project.directory),
                runtime_dir=str(project.runtime_dir),
            )
            if reason:
                raise StartError(reason)
        except runtime.Detached as detached:
            runtime.wait_ready(detached.pid, is_up, timeout=30.0)
            write(
                f"supervisord is running in the background (pid {detached.pid}); "
                "see 'manage.py supervisor status'"
            )


def output_fd(stream: Any) -> int:
    """The file descriptor behind a command's stdout (the process's own if it has none)."""
    try:
        return int(getattr(stream, "_out", stream).fileno())
    except (AttributeError, OSError, ValueError):
        return sys.stdout.fileno()
