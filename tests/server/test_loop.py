"""The event-driven loop (issue 8): signals land, stops overlap, SIGCHLD wakes the loop.

These tests assert on the order of events (log lines, timestamps programs wrote as
things happened to them), not on how long anything took; the one exception says why.
"""

from __future__ import annotations

import re
import signal
import textwrap
import time
from pathlib import Path

import pytest

from tests.utils import LineReader, Project, Rpc, make_project, program, wait_dead


def new_project(projects: list[Project], root: Path, conf: str) -> Project:
    project = make_project(root / "proj", textwrap.dedent(conf))
    projects.append(project)
    return project


# --- a stop racing a start -------------------------------------------------------------

ROUNDS = 10


@pytest.mark.parametrize(
    "spawn",
    [
        "",
        # With user= supervisord forks and sets the user up in the child before exec:
        # the window in which a signal used to be swallowed by supervisord's own handler.
        "user=root",
    ],
    ids=["default", "fork path"],
)
def test_a_stop_racing_a_start_lands(projects: list[Project], tmp_path: Path, spawn: str) -> None:
    log = tmp_path / "supervisord.log"
    project = new_project(
        projects,
        tmp_path,
        f"""
        [supervisord]
        logfile={log}

        [program:racer]
        command={program("sleeper.py", "racer")}
        autostart=false
        startsecs=0
        stopwaitsecs=1
        {spawn}
        """,
    )
    server = project.start()
    output = LineReader(server)
    rpc = Rpc(project)
    rpc.wait_states({"racer": "STOPPED"}, server)

    for _ in range(ROUNDS):
        # One request: supervisord handles the stop right after the spawn, in the same
        # loop iteration, before the new program can have set anything up.
        results = rpc.call(
            "system.multicall",
            [
                {"methodName": "supervisor.startProcess", "params": ["racer", False]},
                {"methodName": "supervisor.stopProcess", "params": ["racer", False]},
            ],
        )
        assert results == [True, True]
        rpc.wait_states({"racer": "STOPPED"}, server)

    text = log.read_text()
    spawned = re.findall(r"spawned: 'racer' with pid (\d+)", text)
    assert len(spawned) == ROUNDS
    assert text.count("stopped: racer (terminated by SIGTERM)") == ROUNDS, text
    assert "with SIGKILL" not in text
    server.send_signal(signal.SIGTERM)
    assert output.finish() == 0, output.text
    wait_dead(int(pid) for pid in spawned)


def test_a_waited_stop_all_answers_once_stopped(projects: list[Project], tmp_path: Path) -> None:
    names = ["one", "two", "three"]
    project = new_project(
        projects,
        tmp_path,
        "".join(
            f"""
            [program:{name}]
            command={program("sleeper.py", name)}
            startsecs=0
            """
            for name in names
        ),
    )
    server = project.start()
    output = LineReader(server)
    rpc = Rpc(project)
    rpc.wait_states(dict.fromkeys(names, "RUNNING"), server)

    # stopAllProcesses(wait=True), as "stop all" and "restart all" call it, answers
    # from a deferred producer, which supervisord re-checks at most every 0.1 s (its
    # channel's delay); every program is gone within milliseconds. A loop that sleeps
    # until the next process transition only sleeps the full 1 s poll before it looks
    # again. Nothing but time tells the two apart, hence a bound far from both: under
    # load one round may be slow, but not most of them.
    slow = 0
    for _ in range(4):
        started = time.monotonic()
        assert len(rpc.call("supervisor.stopAllProcesses", True)) == len(names)
        slow += time.monotonic() - started >= 0.5
        assert len(rpc.call("supervisor.startAllProcesses", True)) == len(names)
    assert slow <= 1
    server.send_signal(signal.SIGTERM)
    assert output.finish() == 0, output.text


# --- parallel stop within a priority, order across priorities ----------------------------


def slow_stopper(name: str, priority: int, events: Path) -> str:
    return textwrap.dedent(
        f"""
        [program:{name}]
        command={program("slowstop.py", name, str(events))}
        priority={priority}
        startsecs=0
        """
    )


def read_events(events: Path) -> dict[str, dict[str, float]]:
    """``{name: {event: time}}`` from the programs' event log."""
    found: dict[str, dict[str, float]] = {}
    for line in events.read_text().splitlines():
        name, event, when = line.split()
        found.setdefault(name, {})[event] = float(when)
    return found


def test_one_priority_stops_at_once_and_priorities_stay_ordered(
    projects: list[Project], tmp_path: Path
) -> None:
    events = tmp_path / "events.log"
    low = [f"low{index}" for index in range(6)]  # priority 10: stopped last
    high = ["high0", "high1"]  # priority 20: stopped first
    conf = "".join(
        [slow_stopper(name, 10, events) for name in low]
        + [slow_stopper(name, 20, events) for name in high]
    )
    project = new_project(projects, tmp_path, conf)
    server = project.start()
    output = LineReader(server)
    project.wait_for(
        lambda: events.exists() and len(read_events(events)) == 8,
        what="every program to install its SIGTERM handler",
    )

    server.send_signal(signal.SIGTERM)
    assert output.finish() == 0, output.text
    seen = read_events(events)
    for name in low + high:
        assert set(seen[name]) == {"ready", "term", "exit"}, seen

    # Across levels: priority 20 was gone before priority 10 was even told.
    assert max(seen[name]["exit"] for name in high) < min(seen[name]["term"] for name in low)
    # Within a level: every program was signalled before any of its peers had finished,
    # so their 0.3 s stops overlapped (one at a time, each would wait for the last).
    for level in (low, high):
        assert max(seen[name]["term"] for name in level) < min(
            seen[name]["exit"] for name in level
        ), seen


# --- SIGCHLD wakes the loop ------------------------------------------------------------


def test_sigchld_wakes_the_loop(projects: list[Project], tmp_path: Path) -> None:
    log = tmp_path / "supervisord.log"
    project = new_project(
        projects,
        tmp_path,
        f"""
        [supervisord]
        logfile={log}
        loglevel=blather

        [program:quick]
        command={program("quitter.py", "0.2")}
        startsecs=0
        autorestart=false
        """,
    )
    server = project.start()
    output = LineReader(server)
    # Wait on the log file, not over XML-RPC: a request would wake the loop itself.
    project.wait_for(lambda: log.exists() and "exited: quick" in log.read_text(), what="exit")
    rpc = Rpc(project)
    assert rpc.info()["quick"]["statename"] == "EXITED"

    # quitter closes its output at once (an EOF supervisord handles then), and exits
    # 0.2 s later, when nothing but SIGCHLD can wake the loop. At blather level
    # supervisord logs what each wake-up read: the iteration that reaped it must have
    # been woken by the signal pipe, not by the 1 s poll timeout running out (after
    # which the last read event would still be quick's EOF).
    lines = log.read_text().splitlines()
    spawned = next(i for i, line in enumerate(lines) if "spawned: 'quick'" in line)
    exited = next(i for i, line in enumerate(lines) if "exited: quick (exit status 0" in line)
    before = list(enumerate(lines[:exited]))
    eof = max(i for i, line in before if "stopped monitoring" in line and "quick" in line)
    wakeups = [i for i, line in before if "read event caused by" in line]
    assert spawned < eof < wakeups[-1] < exited, "\n".join(lines)
    assert "WakeupDispatcher" in lines[wakeups[-1]], "\n".join(lines)

    server.send_signal(signal.SIGTERM)
    assert output.finish() == 0, output.text
