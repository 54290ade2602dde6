"""Many programs (issue 16): answers stay complete and whole, nothing due is skipped.

The loop transitions only processes with something due, rebuilds its pipe map only
after a state change, scans inherited descriptors once per round and sends large
answers in few rounds. These tests check what those shortcuts must not lose; how fast
they are is measured in benchmarks/scale.py, not here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.utils import Project, Rpc, make_project, program, wait_for

MANY = 300
BIG_LINES = 40_000  # 80-byte lines: 3.2 MB, over the channel's 1 MiB send size

FDS_PY = """\
import os, sys, time
fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
with open(sys.argv[1], "w") as out:
    out.write(" ".join(map(str, fds)))
time.sleep(600)
"""

BIG_PY = f"""\
import sys, time
line = "x" * 79 + "\\n"
sys.stdout.write(line * {BIG_LINES})
sys.stdout.flush()
time.sleep(600)
"""


def start_project(projects: list[Project], tmp_path: Path, conf: str) -> tuple[Project, Rpc, Any]:
    project = make_project(tmp_path / "proj", conf)
    projects.append(project)
    server = project.start("--noreload")
    return project, Rpc(project), server


def sleepers(count: int) -> str:
    return "".join(f"[program:s{i:03d}]\ncommand=sleep 600\nstartsecs=0\n\n" for i in range(count))


def test_status_over_many_programs_is_complete(projects: list[Project], tmp_path: Path) -> None:
    project, rpc, server = start_project(projects, tmp_path, sleepers(MANY))
    names = {f"s{i:03d}" for i in range(MANY)}
    info = rpc.wait_states(dict.fromkeys(names, "RUNNING"), server, timeout=120)
    assert len({entry["pid"] for entry in info.values()}) == MANY

    out, err, code = project.manage("supervisor", "status")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert {line.split()[0] for line in lines} == names
    assert all(line.split()[1] == "RUNNING" for line in lines)


def test_a_large_answer_arrives_whole(projects: list[Project], tmp_path: Path) -> None:
    script = tmp_path / "big.py"
    script.write_text(BIG_PY)
    _, rpc, server = start_project(
        projects,
        tmp_path,
        f"[program:big]\ncommand={{{{ PYTHON }}}} -u {script}\nstartsecs=0\n"
        f"stdout_logfile_maxbytes=0\n\n{sleepers(50)}",
    )
    rpc.wait_states({"big": "RUNNING"}, server, timeout=60)
    size = 80 * BIG_LINES
    wait_for(
        lambda: rpc.call("supervisor.tailProcessStdoutLog", "big", 0, 0)[1] >= size,
        30,
        "big's output logged",
    )
    data = rpc.call("supervisor.readProcessStdoutLog", "big", 0, size)
    assert len(data) == size
    assert data == ("x" * 79 + "\n") * BIG_LINES


def test_an_exiting_program_is_restarted_among_idle_ones(
    projects: list[Project], tmp_path: Path
) -> None:
    # Every other program is RUNNING (idle, no longer transitioned): the crasher's exit
    # must still bring it back, time after time.
    _, rpc, server = start_project(
        projects,
        tmp_path,
        "[program:crasher]\n"
        'command={{ PYTHON }} -c "import time, sys; time.sleep(0.3); sys.exit(3)"\n'
        f"startsecs=0\nautorestart=true\nstartretries=100\n\n{sleepers(100)}",
    )
    rpc.wait_states({f"s{i:03d}": "RUNNING" for i in range(100)}, server, timeout=60)
    pids: set[int] = set()

    def restarted_thrice() -> bool:
        pid = rpc.call("supervisor.getProcessInfo", "crasher")["pid"]
        if pid:
            pids.add(pid)
        return len(pids) >= 3

    wait_for(restarted_thrice, 30, "crasher restarted")


def test_programs_do_not_inherit_our_descriptors(projects: list[Project], tmp_path: Path) -> None:
    # manage.py inherits a descriptor (as from a shell or a service manager): no
    # program may get it, whether started in the first round or later on request.
    script = tmp_path / "fds.py"
    script.write_text(FDS_PY)
    conf = "".join(
        f"[program:f{i}]\ncommand={{{{ PYTHON }}}} {script} {tmp_path / f'f{i}.fds'}\n"
        f"startsecs=0\nautostart={'false' if i == 3 else 'true'}\n\n"
        for i in range(4)
    )
    project = make_project(tmp_path / "proj", conf)
    projects.append(project)
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    try:
        server = project.start("--noreload", pass_fds=(write_end,))
    finally:
        os.close(write_end)
    try:
        rpc = Rpc(project)
        rpc.wait_states({"f0": "RUNNING", "f1": "RUNNING", "f2": "RUNNING"}, server)
        assert rpc.call("supervisor.startProcess", "f3") is True
        files = [tmp_path / f"f{i}.fds" for i in range(4)]
        wait_for(lambda: all(f.exists() and f.read_text() for f in files), 20, "fds written")
        for path in files:
            fds = [int(fd) for fd in path.read_text().split()]
            # 0-2, and the descriptor listdir() itself opened.
            assert write_end not in fds, (path.name, fds)
            assert len(fds) == 4, (path.name, fds)
    finally:
        os.close(read_end)


def test_stdin_reaches_a_program_among_idle_ones(projects: list[Project], tmp_path: Path) -> None:
    # Pipes are registered with the poller only after a state change: data sent to a
    # RUNNING program's stdin must still be written, again and again.
    _, rpc, server = start_project(
        projects,
        tmp_path,
        f"[program:echo]\ncommand={program('echoer.py', 'echo')}\nstartsecs=0\n\n{sleepers(50)}",
    )
    rpc.wait_states({"echo": "RUNNING", "s049": "RUNNING"}, server, timeout=60)
    # 300 KB: more than a pipe holds, so most of it is written by later loop rounds.
    for batch in ("a", "b"):
        lines = "".join(f"{batch}{i:04d} {'.' * 93}\n" for i in range(3000))
        assert rpc.call("supervisor.sendProcessStdin", "echo", lines) is True

        def echoed(batch: str = batch) -> bool:
            log = rpc.call("supervisor.tailProcessStdoutLog", "echo", 0, 200)[0]
            return f"echo got {batch}2999 " in log

        wait_for(echoed, 30, f"batch {batch} echoed")


def test_a_start_in_batches_keeps_priority_order(projects: list[Project], tmp_path: Path) -> None:
    # More programs than one round starts (activity.SPAWN_BUDGET): they still start in
    # priority order across rounds, lowest priority number first.
    log = tmp_path / "supervisord.log"
    count = 450
    conf = f"[supervisord]\nlogfile={log}\n\n" + "".join(
        f"[program:s{i:03d}]\ncommand=sleep 600\nstartsecs=0\npriority={1000 - i}\n\n"
        for i in range(count)
    )
    _, rpc, server = start_project(projects, tmp_path, conf)
    rpc.wait_states({f"s{i:03d}": "RUNNING" for i in range(count)}, server, timeout=120)
    spawned = [line.split("'")[1] for line in log.read_text().splitlines() if "spawned: '" in line]
    assert spawned == [f"s{i:03d}" for i in reversed(range(count))]


def test_a_spawn_the_thread_cannot_make_is_reported_as_supervisord_does(
    projects: list[Project], tmp_path: Path
) -> None:
    # Spawns a round hands over to the spawning thread: one it cannot make (its
    # directory is gone) goes through supervisord's own fork, whose child reports why.
    missing = tmp_path / "gone"
    conf = sleepers(40) + (
        f"[program:lost]\ncommand=sleep 600\ndirectory={missing}\nstartsecs=1\n"
        "startretries=0\npriority=500\n"
    )
    _, rpc, server = start_project(projects, tmp_path, conf)
    expected = {f"s{i:03d}": "RUNNING" for i in range(40)}
    info = rpc.wait_states({**expected, "lost": "FATAL"}, server, timeout=60)
    assert len({info[name]["pid"] for name in expected}) == 40
    stderr = rpc.call("supervisor.readProcessStderrLog", "lost", 0, 0)
    assert f"couldn't chdir to {missing}" in stderr, stderr
