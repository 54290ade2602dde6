"""``manage.py supervisor status --json [NAMES]``: ProcessInfo records as a JSON array."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.utils import Project, make_project, sleeper


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """One supervisord for the whole module: the tests only read its state."""
    proj = make_project(
        tmp_path_factory.mktemp("status") / "proj",
        f"""
        [program:one]
        command={sleeper("one")}
        startsecs=0
        [program:two]
        command={sleeper("two")}
        startsecs=0
        [group:pair]
        programs=one,two
        [program:idle]
        command={sleeper("idle")}
        autostart=false
        """,
    )
    try:
        proj.start()
        proj.wait_running("pair:one", "pair:two")
        yield proj
    finally:
        proj.cleanup()


def status_json(project: Project, *args: str) -> tuple[list[dict[str, Any]], str, int]:
    out, err, code = project.manage("supervisor", "status", "--json", *args)
    return json.loads(out), err, code


def test_every_process(running: Project) -> None:
    records, err, code = status_json(running)
    # supervisorctl's exit code: 3 because idle is not running.
    assert (err, code) == ("", 3)
    assert [r["namespec"] for r in records] == ["idle", "pair:one", "pair:two"]
    idle, one, _ = records
    assert set(one) == {
        "namespec",
        "name",
        "group",
        "state",
        "pid",
        "started_at",
        "stopped_at",
        "exitstatus",
        "description",
        "stdout_logfile",
        "stderr_logfile",
        "health",
        "cpu_percent",
        "rss",
    }
    assert (one["name"], one["group"], one["state"]) == ("one", "pair", "RUNNING")
    out, _, _ = running.manage("supervisor", "pid", "pair:one")
    assert one["pid"] == int(out)
    started = datetime.datetime.fromisoformat(one["started_at"])
    assert started.tzinfo is not None
    assert abs((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()) < 120
    assert one["stopped_at"] is None
    assert Path(one["stdout_logfile"]).is_absolute()
    assert (idle["state"], idle["pid"], idle["started_at"]) == ("STOPPED", None, None)
    assert idle["description"] == "Not started"


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["pair:one", "pair:two"], id="names"),
        pytest.param(["pair:*"], id="group"),
        pytest.param(["pair:two", "pair:one", "pair:two"], id="repeated"),
    ],
)
def test_selected_processes(running: Project, args: list[str]) -> None:
    records, err, code = status_json(running, *args)
    assert (err, code) == ("", 0)
    assert sorted(r["namespec"] for r in records) == ["pair:one", "pair:two"]
    assert {r["state"] for r in records} == {"RUNNING"}


def test_option_after_the_names(running: Project) -> None:
    out, err, code = running.manage("supervisor", "status", "idle", "--json")
    assert (err, code) == ("", 3)
    assert [r["namespec"] for r in json.loads(out)] == ["idle"]


def test_unknown_name_is_an_error(running: Project) -> None:
    out, err, code = running.manage("supervisor", "status", "--json", "pair:one", "ghost")
    assert (out, err, code) == ("", "CommandError: no such process: ghost\n", 1)


def test_json_with_another_action(running: Project) -> None:
    out, err, code = running.manage("supervisor", "--json", "start", "idle")
    assert (out, err, code) == ("", "CommandError: --json works with the status action only\n", 2)


def test_without_supervisord(tmp_path: Path) -> None:
    proj = make_project(tmp_path / "idle", "[program:a]\ncommand=a\n")
    try:
        out, err, code = proj.manage("supervisor", "status", "--json")
    finally:
        proj.cleanup()
    assert (out, code) == ("", 1)
    assert err.startswith("CommandError: supervisord is not running (control socket ")
    assert err.count("\n") == 1
