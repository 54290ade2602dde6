"""Autoreload: the ``autoreload`` program watches a real project and restarts real programs.

Programs are tiny scripts; every restart is proven by a changed pid, read over XML-RPC.
Children get the caller's PYTHONPATH as well, so this file can also be run against the
optional watchfiles backend (``PYTHONPATH=<dir with watchfiles> pytest ...``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from djsupervisor import config
from djsupervisor.autoreload import watcher as autoreload
from djsupervisor.autoreload.reloaders import ProjectStatReloader, Selector
from djsupervisor.autoreload.targets import PROGRAM, Target, select_targets, signal_name
from djsupervisor.client import ctl
from tests.utils import Project, ctl_section, make_project, sleeper

# A change is seen within a poll (1 s) plus the quiet spell that ends a burst; after
# this long with nothing restarted, nothing will be.
QUIET = 2.5

HUP_PROGRAM = """\
import signal, sys, time
signal.signal(signal.SIGHUP, lambda *_: print("got SIGHUP", flush=True))
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


class Running:
    """A started ``manage.py supervisor`` and an XML-RPC line to it."""

    def __init__(self, project: Project, server: subprocess.Popen[str]) -> None:
        self.project = project
        self.server = server
        section = ctl_section(project)
        self.args = (section["serverurl"], section["username"], section["password"])

    def call(self, method: str, *params: Any) -> Any:
        return autoreload.Channel(*self.args)(method, *params)

    def pid(self, name: str) -> int:
        return int(self.call("getProcessInfo", name)["pid"])

    def state(self, name: str) -> str:
        return str(self.call("getProcessInfo", name)["statename"])

    def log(self, name: str) -> str:
        return str(self.call("readProcessStdoutLog", name, 0, 1 << 20))

    def wait(self, predicate: Any, what: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except (OSError, ctl.xmlrpc.client.Fault):
                pass  # not answering yet, or the program not there yet
            if self.server.poll() is not None:
                raise AssertionError(f"supervisor exited: {self.server.stdout.read()}")  # type: ignore[union-attr]
            time.sleep(0.05)
        raise AssertionError(
            f"timed out waiting for {what}; watcher log:\n{self.log('autoreload')}"
        )

    def wait_new_pid(self, name: str, old: int) -> int:
        self.wait(
            lambda: self.pid(name) not in (0, old) and self.state(name) == "RUNNING",
            f"{name} to run with a new pid",
        )
        return self.pid(name)

    def restarts(self) -> int:
        return self.log("autoreload").count("restarted: ")


def start(project: Project, *args: str) -> Running:
    """Start supervisord; its children see the caller's PYTHONPATH too (see above)."""
    path = [project.env()["PYTHONPATH"], *filter(None, [os.environ.get("PYTHONPATH")])]
    return Running(project, project.start(*args, PYTHONPATH=os.pathsep.join(path)))


def watching(running: Running) -> Running:
    running.wait(lambda: "watching for changes" in running.log("autoreload"), "the watcher")
    return running


def new_project(projects: list[Project], root: Path, conf: str, **kwargs: Any) -> Project:
    project = make_project(root / "proj", conf, debug=True, **kwargs)
    project.write("app/__init__.py", "")
    project.write("app/views.py", "VIEW = 0\n")
    projects.append(project)
    return project


def test_restarts_once_per_burst_and_only_what_it_should(
    tmp_path: Path, projects: list[Project]
) -> None:
    hup = tmp_path / "hup.py"
    hup.write_text(HUP_PROGRAM)
    project = new_project(
        projects,
        tmp_path,
        f"""
        [program:web]
        command={sleeper("web")}
        startsecs=0
        [program:pinned]
        command={sleeper("pinned")}
        startsecs=0
        autoreload=false
        [program:graceful]
        command={{{{ PYTHON }}}} -u {hup}
        startsecs=0
        autoreload_signal=HUP
        [program:idle]
        command={sleeper("idle")}
        autostart=false
        """,
    )
    running = watching(start(project))
    running.wait(lambda: "ready" in running.log("graceful"), "graceful's SIGHUP handler")
    before = {name: running.pid(name) for name in ("web", "pinned", "graceful", "autoreload")}

    # A burst, as from an editor or a checkout: several files over half a second.
    for i in range(6):
        project.write(f"app/mod{i}.py", f"X = {i}\n")
        project.write("app/views.py", f"VIEW = {i}\n")
        time.sleep(0.05)
    web = running.wait_new_pid("web", before["web"])
    # Ignored by the default patterns: hidden, editor backups and locks, not Python.
    project.write("app/.views.py.swp.py", "x\n")
    project.write("app/views.py~", "x\n")
    project.write("app/#views.py#", "x\n")
    project.write(".git/hooks/x.py", "x\n")
    project.write("notes.txt", "x\n")
    time.sleep(QUIET)

    assert (running.pid("web"), running.restarts()) == (web, 1), running.log("autoreload")
    assert running.pid("pinned") == before["pinned"]
    assert running.pid("graceful") == before["graceful"]
    assert running.log("graceful").count("got SIGHUP") == 1
    assert running.state("idle") == "STOPPED"
    assert running.pid("autoreload") == before["autoreload"]
    log = running.log("autoreload")
    assert "restarted: web\n" in log
    assert "signalled: graceful (SIGHUP)\n" in log
    assert "Traceback" not in log

    # The watcher keeps working, reload after reload; new and deleted files count too.
    for change in (
        lambda: project.write("app/views.py", "VIEW = 10\n"),
        lambda: project.write("app/new/package/__init__.py", ""),
        lambda: (project.path / "app/mod0.py").unlink(),
    ):
        old = running.pid("web")
        change()
        running.wait_new_pid("web", old)
    # Signals go out right after the restarts.
    running.wait(lambda: running.log("graceful").count("got SIGHUP") == 4, "4 SIGHUPs")
    assert running.pid("autoreload") == before["autoreload"]

    out, err, code = project.manage("supervisor", "shutdown")
    assert (out.strip(), err, code) == ("Shut down", "", 0)
    assert running.server.wait(timeout=20) == 0


def test_only_named_programs_and_config_updates(tmp_path: Path, projects: list[Project]) -> None:
    project = new_project(
        projects,
        tmp_path,
        f"""
        [program:web]
        command={sleeper("web")}
        startsecs=0
        [program:worker]
        command={sleeper("worker")}
        startsecs=0
        """,
        extra_settings=(
            'SUPERVISOR_AUTORELOAD_PATTERNS = ["*.py", "*.html"]\n'
            'SUPERVISOR_AUTORELOAD_IGNORE_PATTERNS = [".*", "draft*"]\n'
        ),
    )
    project.write("templates/page.html", "<p>0</p>\n")
    running = watching(start(project, "-r", "worker"))
    web, worker = running.pid("web"), running.pid("worker")

    project.write("templates/page.html", "<p>1</p>\n")
    worker = running.wait_new_pid("worker", worker)
    project.write("templates/draft-page.html", "<p>1</p>\n")  # ignored by the settings
    time.sleep(QUIET)
    assert (running.pid("web"), running.pid("worker"), running.restarts()) == (web, worker, 1)

    # A broken config is reported and changes nothing; the fixed one is applied as
    # "update" does: the new program starts, the others keep running.
    conf = project.path / "supervisord.conf"
    good = conf.read_text()
    conf.write_text(good + "[program:extra]\ncommand={{ NO_SUCH_THING }}\n")
    running.wait(
        lambda: "config not applied" in running.log("autoreload"), "the config error report"
    )
    conf.write_text(good + f"[program:extra]\ncommand={sleeper('extra')}\nstartsecs=0\n")
    running.wait(lambda: running.state("extra") == "RUNNING", "extra RUNNING")
    assert (running.pid("web"), running.pid("worker")) == (web, worker)
    assert "added: extra\n" in running.log("autoreload")
    assert running.restarts() == 1


def test_noreload_runs_no_watcher(tmp_path: Path, projects: list[Project]) -> None:
    project = new_project(projects, tmp_path, f"[program:web]\ncommand={sleeper('web')}\n")
    running = start(project, "--noreload")
    project.wait_running("web")
    web = running.pid("web")
    project.write("app/views.py", "VIEW = 1\n")
    time.sleep(QUIET)
    assert running.pid("web") == web
    assert set(project.status()) == {"web"}


def watcher_section(project: Project, *args: str) -> dict[str, str] | None:
    out, err, code = project.manage("supervisor", "getconfig", *args)
    assert (err, code) == ("", 0)
    return config.parse(out, "getconfig").sections.get("program:autoreload")


def test_when_the_watcher_is_configured(tmp_path: Path, projects: list[Project]) -> None:
    conf = "[program:web]\ncommand=web\n[program:db]\ncommand=db\n"
    project = new_project(projects, tmp_path, conf)
    section = watcher_section(project, "-r", "web", "--autoreload=db", "-x", "db")
    assert section is not None
    assert section["command"] == (
        f'"{sys.executable}" "{project.path}/manage.py" supervisor autoreload '
        f'"--project-dir={project.path}" --exclude=db --autoreload=web --autoreload=db'
    )
    assert section["autoreload"] == "false"
    other = project.write("other.conf", conf)
    section = watcher_section(project, "--config-file", str(other))
    assert section is not None
    assert f'"--config-file={other}"' in section["command"]
    assert watcher_section(project, "--noreload") is None
    project.write("supervisord.conf", conf + "[program:autoreload]\nexclude=true\n")
    assert watcher_section(project) is None
    # Without DEBUG it is off, unless a project asks for it.
    production = make_project(tmp_path / "prod", conf, debug=False)
    projects.append(production)
    assert watcher_section(production) is None
    production.write("supervisord.conf", conf + "[program:autoreload]\nexclude=false\n")
    assert watcher_section(production) is not None
    out, err, code = project.manage("supervisor", "getconfig", "-r", "nope")
    assert (out, code) == ("", 1)
    assert "--autoreload nope: no program named 'nope'" in err


def test_the_watcher_command_refuses_an_unknown_program(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", "[program:web]\ncommand=web\n", debug=True)
    out, err, code = project.manage("supervisor", "autoreload", "-r", "nope")
    assert (out, code) == ("", 1)
    assert err.startswith("CommandError: --autoreload nope: no program named 'nope'")


# --- in-process units ---------------------------------------------------------------------


def test_select_targets() -> None:
    sections = config.parse(
        """
        [program:autoreload]
        command=watch
        [program:web]
        command=web
        [program:pinned]
        command=p
        autoreload=off
        [program:hup]
        command=h
        autoreload_signal=sighup
        [program:odd]
        command=o
        autoreload=ture
        autoreload_signal=NOPE
        [program:pool]
        command=p
        numprocs=2
        process_name=%(program_name)s_%(process_num)d
        [program:weird]
        command=w
        process_name=%(no_such)s
        [group:workers]
        programs=pool,weird
        """.replace("\n        ", "\n"),
        "test",
    ).sections
    targets, warnings = select_targets(sections)
    assert targets == [
        Target("web"),
        Target("hup", signal="HUP"),
        Target("odd"),
        Target("workers", "pool_0"),
        Target("workers", "pool_1"),
        Target("workers"),  # a name it cannot expand: the whole group
    ]
    assert warnings == [
        "[program:odd] autoreload = 'ture' is not a boolean; taken as true",
        "[program:odd] autoreload_signal = 'NOPE' names no signal; restarting it instead",
    ]
    only, _ = select_targets(sections, only=["pinned", "autoreload"], skip=["web"])
    assert only == [Target("pinned")]
    assert select_targets(sections, skip=["web", "hup", "odd", "pool", "weird"])[0] == []
    assert Target("workers").matches("workers", "anything")
    assert not Target("workers", "pool_0").matches("workers", "pool_1")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("HUP", "HUP"), ("sigusr1", "USR1"), (str(int(signal.SIGTERM)), "TERM"), ("nope", None)],
)
def test_signal_name(value: str, expected: str | None) -> None:
    assert signal_name(value) == expected


def test_selector_walks_and_classifies(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    files = [
        "manage.py",
        "app/views.py",
        "app/page.html",
        "app/.hidden.py",
        "app/views.py~",
        ".venv/lib/x.py",
        "venv/pyvenv.cfg",
        "venv/lib/y.py",
        "node_modules/z.py",
        "app/__pycache__/views.py",
    ]
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    conf = root / "supervisord.conf"
    selector = Selector(roots=[root], sources={conf})
    assert sorted(p.relative_to(root).as_posix() for p in selector.walk()) == [
        "app/views.py",
        "manage.py",
    ]
    assert selector.kind(conf) == "config"
    assert selector.kind(root / "app/views.py") == "code"
    assert selector.kind(root / "venv/lib/y.py") is None
    assert selector.kind(root / "venv/lib/y.py", modules={root / "venv/lib/y.py"}) == "code"
    assert selector.kind(root / "app/page.html") is None
    assert selector.kind(tmp_path / "elsewhere.py") is None
    assert selector.kind(tmp_path / "loaded.py", modules={tmp_path / "loaded.py"}) == "code"
    assert PROGRAM == "autoreload"


def test_polling_reloader_reports_changed_new_and_deleted_files(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / "app").mkdir(parents=True)
    (root / "app/views.py").write_text("")
    (root / "app/gone.py").write_text("")
    reloader = ProjectStatReloader(Selector(roots=[root], sources=set()))
    reloader.SLEEP_TIME = 0
    seen: list[Path] = []
    reloader.notify_file_changed = seen.append  # type: ignore[method-assign]
    ticker = reloader.tick()
    next(ticker)
    assert seen == []  # the first pass only takes stock
    os.utime(root / "app/views.py", ns=(1, 1))  # an older mtime is a change too
    (root / "app/new.py").write_text("")
    (root / "app/gone.py").unlink()
    (root / "app/notes.txt").write_text("")
    next(ticker)
    assert sorted(p.name for p in seen) == ["gone.py", "new.py", "views.py"]
    seen.clear()
    next(ticker)
    assert seen == []
