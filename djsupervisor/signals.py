"""Django signals sent by the supervisord running inside ``manage.py supervisor``.

``process_state_changed`` is sent (``sender=None``) on every state change of every
program, from supervisord's own event system (``ProcessStateEvent``), with:

``name``, ``group``
    the process and its group (equal, unless the program is in a ``[group:x]``);
``from_state``, ``to_state``
    supervisord's state names (``STOPPED``, ``STARTING``, ``RUNNING``, ``BACKOFF``,
    ``STOPPING``, ``EXITED``, ``FATAL``);
``pid``
    the process id while it has one, else ``None``;
``expected``
    for ``EXITED``, whether the exit code was one of ``exitcodes``; else ``True``.

Receivers run inside supervisord's loop, which waits for them: keep them quick. A
receiver's exception is logged to supervisord's log and never stops supervisord.
"""

from __future__ import annotations

from typing import Any

from django.db import close_old_connections
from django.dispatch import Signal
from supervisor.states import getProcessStateDescription

__all__ = ["process_state_changed"]

process_state_changed = Signal()


def forward_state_event(event: Any) -> None:
    """supervisord event callback: send ``process_state_changed`` for a ``ProcessStateEvent``."""
    if not process_state_changed.has_listeners():
        return  # nothing to send, and no receiver's connection to close (a start's hot path)
    process = event.process
    config = process.config
    to_state = getProcessStateDescription(process.state)
    from_state = getProcessStateDescription(event.from_state)
    results = process_state_changed.send_robust(
        sender=None,
        name=config.name,
        group=process.group.config.name if process.group else config.name,
        from_state=from_state,
        to_state=to_state,
        pid=process.pid or None,
        expected=bool(getattr(event, "expected", True)),
    )
    for receiver, result in results:
        if isinstance(result, Exception):
            config.options.logger.error(
                f"process_state_changed receiver {getattr(receiver, '__qualname__', receiver)} "
                f"failed for {config.name} {from_state} -> {to_state}: "
                f"{type(result).__name__}: {result}"
            )
    # As after a request: a receiver's database connection must not linger (or go stale)
    # in the long-lived supervisord process.
    close_old_connections()
