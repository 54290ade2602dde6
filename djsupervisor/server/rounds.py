"""supervisord's main loop (``Supervisor.runforever``), each round costing O(events).

Stock supervisord, on every round, copies every program's pipes into a fresh map,
asks each of them whether it is readable or writable, registers each with the poller
(which keeps registrations anyway), sorts every group and transitions every one. This
mirrors supervisor 4.3's loop step for step (same hooks, same order: stop phases,
poll, reads, writes, transitions, reap, signals, ticks) but registers programs' pipes
only after a state change (when they can have changed, see activity.py) or for the
processes touched since (stdin written, event listeners), and transitions only the
groups with an active process.
"""

from __future__ import annotations

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
    registered = None
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

        _register(poller, list(socket_map.items()))
        if registered is not process_map:
            _register(poller, process_map.items())
            registered = process_map
        else:
            _register(poller, activity.touched_dispatchers())

        r, w = poller.poll(timeout)
        activity.socket_event = httpchannel.requested(socket_map, r)
        maps = (process_map, socket_map)
        _handle(supervisord, r, maps, read=True)
        _handle(supervisord, w, maps, read=False)

        for group in activity.due_groups():
            group.transition()

        supervisord.reap()
        supervisord.handle_signal()
        supervisord.tick()

        if options.mood < SupervisorStates.RUNNING:
            supervisord.ordered_stop_groups_phase_2()

        if options.test:
            break
