"""Requests during a large start-up (issue 16): answered while programs still start.

A round starts up to a batch of programs, and a large answer leaves through the socket
one send buffer per round: a ``getAllProcessInfo`` issued at the start of a thousand-
program start-up used to come back only once every program was RUNNING. How fast it
comes back is measured in benchmarks/scale.py; here only that it comes back first.
"""

from __future__ import annotations

import time
import xmlrpc.client
from pathlib import Path

from tests.utils import Project, Rpc, make_project

COUNT = 1000  # a ~1.2 MB answer: several send buffers, five spawn batches


def running_lines(log: Path) -> int:
    try:
        return log.read_text().count("entered RUNNING state")
    except FileNotFoundError:
        return 0


def test_get_all_process_info_answers_before_the_start_up_ends(
    projects: list[Project], tmp_path: Path
) -> None:
    log = tmp_path / "supervisord.log"
    conf = f"[supervisord]\nlogfile={log}\n\n" + "".join(
        f"[program:s{i:04d}]\ncommand=sleep 600\nstartsecs=0\nredirect_stderr=true\n\n"
        for i in range(COUNT)
    )
    project = make_project(tmp_path / "proj", conf)
    projects.append(project)
    server = project.start("--noreload")
    rpc = Rpc(project)
    deadline = time.monotonic() + 120
    while True:
        assert server.poll() is None, project.started
        assert time.monotonic() < deadline, "the control socket never answered"
        try:
            info = rpc.call("supervisor.getAllProcessInfo")
        except (OSError, xmlrpc.client.Fault, xmlrpc.client.ProtocolError):
            time.sleep(0.02)  # not listening yet
            continue
        break
    # Read as soon as the answer is in: the start-up must still be under way.
    started = running_lines(log)
    assert len(info) == COUNT
    assert started < COUNT, "answered only once every program was RUNNING"

    # And the start-up goes on to the end, every program started once.
    rpc.wait_states({f"s{i:04d}": "RUNNING" for i in range(COUNT)}, server, timeout=240)
    assert running_lines(log) == COUNT
