"""Tap each program's output for the console, straight from its output dispatchers.

Not from supervisord's ``PROCESS_LOG`` events: those need ``stdout_events_enabled``/
``stderr_events_enabled`` on every process, which changes what a user's ``PROCESS_LOG``
listener receives, and an event listener that writes what it receives to its stderr
would receive its own output, forever (supervisor's issue 565). Tapping the dispatcher
that logs the output leaves supervisord's events exactly as configured.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from supervisor.dispatchers import POutputDispatcher, stripEscapes

from .console import Console


def tap(process_config: Any, console: Console) -> None:
    """Make every output dispatcher of ``process_config``'s processes feed ``console``.

    Dispatchers are made afresh at each spawn by ``process_config.make_dispatchers``;
    wrap it on this config object only (``ProcessConfig.__eq__`` ignores it, so
    ``reread``/``update`` see no change).
    """
    make: Callable[[Any], tuple[dict[int, Any], dict[str, Any]]] = process_config.make_dispatchers

    def make_dispatchers(proc: Any) -> tuple[dict[int, Any], dict[str, Any]]:
        dispatchers, pipes = make(proc)
        for dispatcher in dispatchers.values():
            if isinstance(dispatcher, POutputDispatcher):
                _tap_dispatcher(dispatcher, console)
        return dispatchers, pipes

    process_config.make_dispatchers = make_dispatchers


def _tap_dispatcher(dispatcher: Any, console: Console) -> None:
    # _log() gets exactly the data supervisord would put in a ProcessLogEvent: normal
    # output, never what a program sends inside capture-mode tokens.
    log: Callable[[bytes], None] = dispatcher._log
    config = dispatcher.process.config
    name: str = config.name
    channel: str = dispatcher.channel
    strip = bool(config.options.strip_ansi)

    def tapped(data: bytes) -> None:
        log(data)
        if data:
            if strip:
                data = stripEscapes(data)
            console.output(name, channel, data)

    dispatcher._log = tapped
