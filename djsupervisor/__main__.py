"""``python -m djsupervisor [ARGS]``: ``manage.py supervisor [ARGS]`` without a manage.py.

Django is set up from ``DJANGO_SETTINGS_MODULE`` (or ``--settings``); this is how
``djsupervisor.start()`` runs supervisord in a background process.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

from .protocol import PARENT_PID_ENV
from .server.guard import signal_on_parent_death


def stop_with_parent() -> None:
    """Get SIGTERM (a clean stop of every program) when the process that started us dies.

    Asked for by ``start()`` through the environment; Linux only. Children of ours
    do not inherit it (fork clears it), nor the variable.
    """
    parent = os.environ.pop(PARENT_PID_ENV, None)
    if parent is not None and not signal_on_parent_death(signal.SIGTERM, int(parent)):
        sys.exit("djsupervisor: the process that started supervisord is gone")


def main(argv: Sequence[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if not os.environ.get("DJANGO_SETTINGS_MODULE") and not any(
        arg == "--settings" or arg.startswith("--settings=") for arg in args
    ):
        sys.exit("python -m djsupervisor: set DJANGO_SETTINGS_MODULE or pass --settings=MODULE")
    stop_with_parent()
    from django.core.management import execute_from_command_line

    execute_from_command_line(["python -m djsupervisor", "supervisor", *args])


if __name__ == "__main__":
    main()
