"""Which processes a loop round has to look at: only those with something due.

Stock supervisord, on every loop round, calls ``transition()`` on every process and
rebuilds the map of every program's pipes from scratch. With a thousand programs that
is thousands of calls per round, and a round happens per request, per child exit, per
output chunk: a start-up or a ``status`` that should cost O(programs) costs
O(programs x rounds). Here a plain group transitions only its *active* processes (those
whose state changed since they were last seen with nothing due), and the pipe map is
rebuilt only after a state change, when a program's pipes can have changed; only the
changed processes' pipes are then registered with the poller again (``to_register``).

Every change that can make a process due goes through ``change_state()``, which
notifies a ``ProcessStateEvent`` synchronously: that event marks the process active.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from supervisor import events
from supervisor.process import ProcessGroup, ProcessStates

#: Programs a round may start before it polls again: a start of thousands stays
#: responsive (a request waits for at most one batch, not for every spawn).
SPAWN_BUDGET = 200

#: Seconds a round may spend starting programs while a client talks to us. A request
#: takes rounds: accepted, read and answered, then sent one socket buffer per round;
#: at 200 spawns per round (about a second on a loaded machine) a 2.4 MB
#: ``getAllProcessInfo`` answer came out only once the whole start-up had ended.
SPAWN_SLICE = 0.05

#: Seconds a round may spend starting programs while an answer waits to be sent: the
#: client reads it as fast as we send it, one socket buffer (2 MiB here) per round, so
#: 6.5 MB (``getAllProcessInfo`` over 5,000 programs) took 4-7 rounds of 50 ms of
#: spawning on top of building and reading it.
SENDING_SLICE = 0.005

#: Spawns a round with a time slice leaves with the spawning thread at once (each
#: about 0.5 ms to finish).
SLICED_IN_FLIGHT = 4

_MAY_SPAWN = (ProcessStates.STOPPED, ProcessStates.EXITED, ProcessStates.BACKOFF)

#: ``due_time(proc, now, mood)``: when ``proc.transition()`` will next act, or None.
DueTime = Callable[[Any, float, int], "float | None"]


class Activity:
    """Owned by the supervisord instance; every method runs in its main loop."""

    def __init__(self, supervisord: Any, due_time: DueTime) -> None:
        self.supervisord = supervisord
        self.due_time = due_time
        #: Processes that may have something due, by id() (a Subprocess is unhashable);
        #: a superset is harmless, a subset is not.
        self.active: dict[int, Any] = {}
        self._process_map: dict[int, Any] | None = None
        self._ordered_groups: list[Any] | None = None
        self._listener_groups: list[Any] = []
        #: Processes whose pipes need registering again, by id(): their state changed
        #: (a spawn makes new pipes) or their stdin was written.
        self.touched: dict[int, Any] = {}
        #: Groups were added or removed since the loop last registered every pipe.
        self.regrouped = True
        self._last_round = time.time()
        self._budget = SPAWN_BUDGET
        #: Set by the loop: whether a client is connected to a control channel.
        self.talking: Callable[[], bool] = lambda: False
        #: Set by the loop: whether an answer's bytes wait for the client to take them.
        self.sending: Callable[[], bool] = lambda: False
        #: Set by the loop each round: a control socket (a new connection, a request) was ready.
        self.socket_event = False
        #: When this round's spawning must stop (None: not decided yet this round).
        self._slice_end: float | None = None
        #: Set by the loop: finish handed-over spawns until at most n are out (spawn.py).
        self.settle_spawns: Callable[[int], None] = lambda n: None

    def install(self, group: Any) -> None:
        """Take over a newly added group's per-round transition (plain groups only).

        Event listener pools dispatch events in their ``transition()``: they keep it.
        """
        self._process_map = None
        self._ordered_groups = None
        self.regrouped = True
        if type(group) is not ProcessGroup:
            return
        self.active.update((id(p), p) for p in group.processes.values())
        group.transition = functools.partial(self._transition, group)

    def subscribe(self) -> None:
        """Listen for state and group changes (after supervisord's ``events.clear()``)."""
        events.subscribe(events.ProcessStateEvent, self._changed)
        events.subscribe(events.ProcessGroupAddedEvent, self._regrouped)
        events.subscribe(events.ProcessGroupRemovedEvent, self._regrouped)

    def _changed(self, event: Any) -> None:
        self.active[id(event.process)] = event.process
        # spawn() makes new pipes right after its STARTING event: rebuild and register
        # them lazily, at the next round.
        self.touched[id(event.process)] = event.process
        self._process_map = None

    def _regrouped(self, event: Any) -> None:
        self._process_map = None
        self._ordered_groups = None
        self.regrouped = True
        # A removed group's processes are never transitioned again: forget them.
        current = {id(p) for p in self.processes()}
        self.active = {key: p for key, p in self.active.items() if key in current}

    def new_round(self) -> None:
        """Called once per loop round, before it polls."""
        self._budget = SPAWN_BUDGET
        self._slice_end = None
        now = time.time()
        if now < self._last_round:
            # The clock went back: every process must adjust its recorded times, which
            # transition() does (supervisor's _check_and_adjust_for_system_clock_rollback).
            self.active.update((id(p), p) for p in self.processes())
        self._last_round = now

    def processes(self) -> list[Any]:
        groups = self.supervisord.process_groups.values()
        return [p for g in groups for p in g.processes.values()]

    def pending(self) -> list[Any]:
        """The processes that may have something due, event listeners' included."""
        self._order()
        listeners = [p for g in self._listener_groups for p in g.processes.values()]
        return [*self.active.values(), *listeners]

    def process_map(self) -> dict[int, Any]:
        """Every program's dispatchers by descriptor (``Supervisor.get_process_map``)."""
        if self._process_map is None:
            process_map: dict[int, Any] = {}
            for group in self.supervisord.process_groups.values():
                process_map.update(group.get_dispatchers())
            self._process_map = process_map
        return self._process_map

    def touch(self, proc: Any) -> None:
        """Have ``proc``'s pipes registered again next round (its stdin was written)."""
        self.touched[id(proc)] = proc

    def to_register(self) -> list[tuple[int, Any]]:
        """The pipes a round registers: of every program after a group was added or
        removed, else of the processes touched since the last round (a state change,
        stdin written) and of event listeners (their stdin is written)."""
        procs = list(self.touched.values())
        self.touched.clear()
        if self.regrouped:
            self.regrouped = False
            return list(self.process_map().items())
        self._order()
        for group in self._listener_groups:
            procs.extend(group.processes.values())
        return [item for proc in procs for item in proc.dispatchers.items()]

    def due_groups(self) -> list[Any]:
        """Groups to transition this round, in supervisord's (priority) order."""
        ordered = self._order()
        if not self.active:
            return self._listener_groups
        groups = {id(p.group) for p in self.active.values()}
        return [g for g in ordered if id(g) in groups or type(g) is not ProcessGroup]

    def _order(self) -> list[Any]:
        # Groups change only by add/remove events, which clear this cache.
        if self._ordered_groups is None:
            self._ordered_groups = sorted(self.supervisord.process_groups.values())
            self._listener_groups = [g for g in self._ordered_groups if type(g) is not ProcessGroup]
        return self._ordered_groups

    def _spent(self) -> bool:
        """Whether this round has started all the programs it may."""
        if self._budget <= 0:
            return True
        now = time.time()
        if self._slice_end is None:
            # Decided at the round's first candidate, after its requests were read.
            if self.sending():
                self._slice_end = now + SENDING_SLICE
            elif self.socket_event or self.talking():
                self._slice_end = now + SPAWN_SLICE
            else:
                self._slice_end = float("inf")
        elif self._slice_end != float("inf"):
            # Spawns handed to the thread are finished at the round's end: within a
            # slice, count the wait for them too (a few may stay out meanwhile).
            self.settle_spawns(SLICED_IN_FLIGHT)
            now = time.time()
        return now >= self._slice_end

    def _transition(self, group: Any) -> None:
        if not self.active:
            return
        # In the group's own order, as ProcessGroup.transition does.
        procs = [p for p in group.processes.values() if id(p) in self.active]
        mood = self.supervisord.options.mood
        for proc in procs:
            before = proc.state
            may_spawn = before in _MAY_SPAWN
            if may_spawn and self._spent():
                continue  # stays active; next_timeout() sees it due: no wait
            proc.transition()
            if may_spawn and proc.state != before:
                self._budget -= 1  # it spawned (one held back by dependencies did not)
            if self.due_time(proc, time.time(), mood) is None:
                self.active.pop(id(proc), None)
