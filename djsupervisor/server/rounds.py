"""supervisord's main loop (``Supervisor.runforever``), each round costing O(events).

Stock supervisord, on every round, copies every program's pipes into a fresh map,
asks each of them whether it is readable or writable, registers each with the poller
(which keeps registrations anyway), sorts every group and transitions every one. This
mirrors supervisor 4.3's loop step for step (same hooks, same order: stop phases,
poll, reads, writes, transitions, reap, signals, ticks) but registers only the pipes of
the processes touched since the last round (a state change, after which a spawn's new
pipes exist; stdin written; event listeners; see activity.py), every program's only
after a group was added or removed, and a socket map entry only when it is new or
asks for what it is not registered for (for writing only while it has something to
write, as stock supervisord's poller had it); and it transitions only the groups with
an active process. With the epoll poller (poller.py) a registration is a system call and
the wait costs what is ready: a round costs O(events), not O(programs).
"""

from __future__ import annotations

import contextlib
from typing import Any

from supervisor import events
from supervisor.medusa import asyncore_25 as asyncore
from supervisor.states import SupervisorStates

from . import httpchannel


def _register(poller: Any, items: Any) -> None:
    for fd, dispatcher in items:
        if dispatcher.readable():
            poller.register_readable(fd)
        if dispatcher.writable():
            poller.register_writable(fd)


def _register_sockets(poller: Any, socket_map: dict[int, Any], known: dict[int, Any]) -> None:
    """Register the socket map's entries that are new or want more than is registered.

    ``known`` maps each descriptor to the dispatcher last registered for it: a number
    whose entry left the map (closed) is unregistered, one that names a new dispatcher
    (its number reused) is registered again, whatever the poller's sets say.
    """
    for fd in [fd for fd, was in known.items() if socket_map.get(fd) is not was]:
        del known[fd]
        # Most often unregistered before it closed (poller.forget) already. Otherwise
        # closed or reused: a stock poller may then raise; there is nothing to undo.
        with contextlib.suppress(Exception):
            if fd in poller.readables:
                poller.unregister_readable(fd)
        with contextlib.suppress(Exception):
            if fd in poller.writables:
                poller.unregister_writable(fd)
    for fd, dispatcher in list(socket_map.items()):
        new = known.get(fd) is not dispatcher
        known[fd] = dispatcher
        if dispatcher.writable():
            if new or fd not in poller.writables:
                poller.register_writable(fd)
            # Not for reading meanwhile, as in supervisord (its poller kept only the
            # last registration): a client that shut down its side after its request
            # would have the channel read EOF and close before the answer was out.
            if fd in poller.readables:
                poller.unregister_readable(fd)
        elif dispatcher.readable() and (new or fd not in poller.readables):
            poller.register_readable(fd)


def _handle(supervisord: Any, fds: list[int], maps: tuple[dict[int, Any], ...], read: bool) -> None:
    options = supervisord.options
    poller = options.poller
    for fd in fds:
        # The program's pipes win over a socket of the same number, as in the stock
        # combined map (built socket map first, process map second).
        dispatcher = next((m[fd] for m in maps if fd in m), None)
        if dispatcher is None:
            # Unregister it, or it would be polled (and spin the loop) forever.
            options.logger.blather(f"unexpected {'read' if read else 'write'} event from fd {fd}")
            try:
                if read:
                    poller.unregister_readable(fd)
                else:
                    poller.unregister_writable(fd)
            except Exception:
                pass
            continue
        kind = "read" if read else "write"
        options.logger.blather(f"{kind} event caused by %(dispatcher)r", dispatcher=dispatcher)
        try:
            if read:
                dispatcher.handle_read_event()
                if not dispatcher.readable():
                    poller.unregister_readable(fd)
            else:
                dispatcher.handle_write_event()
                if not dispatcher.writable():
                    poller.unregister_writable(fd)
        except asyncore.ExitNow:
            raise
        except Exception:
            dispatcher.handle_error()


def run_forever(supervisord: Any) -> None:
    """Run supervisord's loop until ``asyncore.ExitNow`` (or one round in test mode)."""
    options = supervisord.options
    activity = supervisord.activity
    poller = options.poller
    socket_map = options.get_socket_map()
    events.notify(events.SupervisorRunningEvent())
    timeout = 1  # the stock value: no fewer than the smallest TickEvent period
    sockets: dict[int, Any] = {}
    while True:
        process_map = supervisord.get_process_map()

        if options.mood < SupervisorStates.RUNNING:
            if not supervisord.stopping:
                supervisord.stopping = True
                supervisord.stop_groups = sorted(supervisord.process_groups.values())
                events.notify(events.SupervisorStoppingEvent())
            supervisord.ordered_stop_groups_phase_1()
            if not supervisord.shutdown_report():
                raise asyncore.ExitNow

        _register_sockets(poller, socket_map, sockets)
        _register(poller, activity.to_register())

        r, w = poller.poll(timeout)
        activity.socket_event = httpchannel.requested(socket_map, r)
        maps = (process_map, socket_map)
        _handle(supervisord, r, maps, read=True)
        _handle(supervisord, w, maps, read=False)

        # Spawns are handed to the spawning thread and finished before anything
        # else, reaping included, looks at the processes (spawn.py SpawnBatch).
        with supervisord.spawn_batch.opened():
            for group in activity.due_groups():
                group.transition()

        supervisord.reap()
        supervisord.handle_signal()
        supervisord.tick()

        if options.mood < SupervisorStates.RUNNING:
            supervisord.ordered_stop_groups_phase_2()

        if options.test:
            break
