"""Helpers for integration tests: temp Django projects, manage.py runs, clean-up."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from djsupervisor.client.lifecycle import pid_alive

PROGRAMS = Path(__file__).resolve().parent / "programs"
REPO = Path(__file__).resolve().parent.parent

#: The settings a project needs for the admin and its Programs page (apps, middleware,
#: templates with the request/auth/messages context), as the admin tests set them.
ADMIN_APP_SETTINGS: dict[str, Any] = {
    "INSTALLED_APPS": [
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "django.contrib.staticfiles",
        "djsupervisor",
    ],
    "MIDDLEWARE": [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ],
    "TEMPLATES": [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ]
            },
        }
    ],
}

MANAGE_PY = """\
#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproj.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""

SETTINGS_PY = """\
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = {secret_key!r}
DEBUG = {debug!r}
INSTALLED_APPS = {apps!r}
DATABASES = {{
    "default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
}}
USE_TZ = True
TIME_ZONE = "UTC"
{extra}
"""


def sleeper(name: str) -> str:
    """Return a supervisord ``command`` running the sleeper test program."""
    return f"{{{{ PYTHON }}}} -u {PROGRAMS / 'sleeper.py'} {name}"


@dataclass
class Project:
    """A throw-away Django project in a temp directory."""

    path: Path
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    def write(self, relative: str, text: str) -> Path:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
        return target

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        env["PYTHONPATH"] = os.pathsep.join([str(self.path), str(REPO)])
        env.update(extra)
        return env

    def manage(
        self, *args: str, timeout: float = 60, input: str | None = None, **env: str
    ) -> tuple[str, str, int]:
        """Run ``manage.py ARGS`` to completion; return ``(stdout, stderr, returncode)``."""
        proc = subprocess.run(
            [sys.executable, str(self.path / "manage.py"), *args],
            cwd=self.path,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        return proc.stdout, proc.stderr, proc.returncode

    def start(
        self,
        *args: str,
        cwd: Path | None = None,
        preexec_fn: Callable[[], object] | None = None,
        pass_fds: Sequence[int] = (),
        **env: str,
    ) -> subprocess.Popen[str]:
        """Start ``manage.py supervisor ARGS`` in the foreground, in its own session.

        ``cwd`` (default: the project), ``preexec_fn`` and ``pass_fds`` go to ``Popen`` for
        the tests that start it from elsewhere, with other limits, or with an inherited fd.
        """
        proc = subprocess.Popen(
            [sys.executable, str(self.path / "manage.py"), "supervisor", *args],
            cwd=cwd or self.path,
            env=self.env(**env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=preexec_fn,
            pass_fds=pass_fds,
        )
        self.started.append(proc)
        return proc

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20, what: str = "") -> None:
        wait_for(predicate, timeout, what)

    def status(self) -> dict[str, str]:
        """Return ``{name: state}`` from ``manage.py supervisor status``."""
        out, _, _ = self.manage("supervisor", "status")
        return {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}

    def wait_running(self, *names: str, timeout: float = 20) -> None:
        def running() -> bool:
            states = self.status()
            return all(states.get(name) == "RUNNING" for name in names)

        self.wait_for(running, timeout, f"{names} RUNNING")

    def cleanup(self) -> None:
        """Stop everything this project started, by pid, also after a failed test."""
        pids = set(descendants(p.pid for p in self.started))
        pids.update(p.pid for p in self.started)
        pids.update(daemon_pids(self.path))
        pids.update(descendants(pids))
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.started:
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for runtime in runtime_dirs(self.path):
            shutil.rmtree(runtime, ignore_errors=True)


def wait_for(
    predicate: Callable[[], bool], timeout: float = 20, what: str = "", interval: float = 0.05
) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds, naming ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(interval)


def runtime_dirs(project_dir: Path) -> list[Path]:
    from djsupervisor.config.project import default_runtime_dir

    return [default_runtime_dir(project_dir.resolve())]


def not_running_line(project: Project) -> str:
    """stderr of a control command run while the project's supervisord is not running."""
    socket_path = runtime_dirs(project.path)[0] / "supervisor.sock"
    return (
        f"CommandError: supervisord is not running (control socket {socket_path}); "
        "start it with 'manage.py supervisor'\n"
    )


def daemon_pids(project_dir: Path) -> list[int]:
    """Pids of a daemonized instance of this project (from its pidfile)."""
    pids = []
    for runtime in runtime_dirs(project_dir):
        with contextlib.suppress(OSError, ValueError):
            pids.append(int((runtime / "supervisord.pid").read_text()))
    return pids


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(roots: Iterable[int]) -> list[int]:
    """All live descendants of ``roots`` (Linux /proc; empty elsewhere)."""
    if not Path("/proc/self/stat").exists():
        return []
    tree = _children()
    found: list[int] = []
    stack = list(roots)
    while stack:
        for child in tree.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` in kB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def make_project(
    root: Path,
    conf: str | None,
    *,
    apps: dict[str, str | None] | None = None,
    debug: bool = False,
    secret_key: str = "integration-test-secret",
    extra_settings: str = "",
) -> Project:
    """Create a project with ``conf`` as its supervisord.conf and ``apps`` (name: conf)."""
    project = Project(root)
    project.write("manage.py", MANAGE_PY)
    project.write("testproj/__init__.py", "")
    app_names = ["djsupervisor"]
    for name, app_conf in (apps or {}).items():
        project.write(f"{name}/__init__.py", "")
        project.write(f"{name}/management/__init__.py", "")
        if app_conf is not None:
            project.write(f"{name}/management/supervisord.conf", app_conf)
        app_names.append(name)
    project.write(
        "testproj/settings.py",
        SETTINGS_PY.format(
            secret_key=secret_key, debug=debug, apps=app_names, extra=extra_settings
        ),
    )
    if conf is not None:
        project.write("supervisord.conf", conf)
    return project


@contextlib.contextmanager
def site_settings(tmp_path: Path, **settings: Any) -> Iterator[Path]:
    """An empty project directory for in-process tests, the settings pointing at it.

    It is ``tmp_path/site``, its runtime dir ``tmp_path/rt``; ``settings`` add overrides.
    """
    from django.test import override_settings

    directory = tmp_path / "site"
    directory.mkdir()
    with override_settings(
        SUPERVISOR_PROJECT_DIR=directory,
        SUPERVISOR_RUNTIME_DIR=tmp_path / "rt",
        SUPERVISOR_CONFIG_FILE=None,
        **settings,
    ):
        yield directory


# --- Helpers for the server, control and daemon integration tests -------------------------


def program(script: str, *args: str) -> str:
    """Return a supervisord ``command`` running ``tests/programs/SCRIPT`` with ``args``."""
    return " ".join([f"{{{{ PYTHON }}}} -u {PROGRAMS / script}", *args])


def parent_pid(pid: int) -> int:
    """The parent pid of ``pid``, from /proc/PID/stat (Linux)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def wait_dead(pids: Iterable[int], timeout: float = 15) -> None:
    """Wait until every pid is gone (or a zombie); fail naming the survivors."""
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if pid_alive(pid)]
        if not alive:
            return
        time.sleep(0.05)
    raise AssertionError(f"still alive after {timeout} s: {alive}")


def ctl_section(project: Project) -> dict[str, str]:
    """The ``[supervisorctl]`` section of ``manage.py supervisor getconfig``."""
    from djsupervisor import config

    out, err, code = project.manage("supervisor", "getconfig")
    assert (err, code) == ("", 0), err
    return config.parse(out, "getconfig").sections["supervisorctl"]


class LineReader:
    """Collect a subprocess's text output in a thread, so tests can wait for a line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        import threading

        assert proc.stdout is not None
        self.proc = proc
        self.lines: list[str] = []
        self._stream = proc.stdout
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        for line in self._stream:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, needle: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(needle in line for line in self.lines):
                return
            time.sleep(0.02)
        raise AssertionError(f"{needle!r} not seen within {timeout} s; output:\n{self.text}")

    def finish(self, timeout: float = 20) -> int:
        """Wait for the process to exit and its output to be read; return its exit code."""
        code = self.proc.wait(timeout=timeout)
        self._thread.join(timeout=timeout)
        self._stream.close()
        return code


# --- Helpers for the reliability and event-loop tests ---------------------------------


class Rpc:
    """XML-RPC access to a project's supervisord, with supervisorctl's credentials."""

    def __init__(self, project: Project) -> None:
        ctl = ctl_section(project)
        self.serverurl = ctl["serverurl"]
        self.username = ctl["username"]
        self.password = ctl["password"]

    def transport(self) -> Any:
        from supervisor.xmlrpc import SupervisorTransport

        return SupervisorTransport(self.username, self.password, self.serverurl)

    def call(self, method: str, *args: Any) -> Any:
        """Call ``method`` (dotted, e.g. ``supervisor.getState``) on a fresh connection."""
        import functools
        import xmlrpc.client

        transport = self.transport()
        try:
            proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport)
            return functools.reduce(getattr, method.split("."), proxy)(*args)
        finally:
            transport.close()

    def info(self) -> dict[str, dict[str, Any]]:
        return {entry["name"]: entry for entry in self.call("supervisor.getAllProcessInfo")}

    def wait_states(
        self,
        expected: dict[str, str],
        server: subprocess.Popen[str] | None = None,
        timeout: float = 30,
    ) -> dict[str, dict[str, Any]]:
        """Poll until every named program is in its expected state; return the info.

        Fails early if ``server`` (the foreground manage.py) has exited.
        """
        import xmlrpc.client

        deadline = time.monotonic() + timeout
        seen: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            if server is not None and server.poll() is not None:
                raise AssertionError(f"server exited with {server.returncode}")
            try:
                seen = self.info()
            except (OSError, xmlrpc.client.Fault, xmlrpc.client.ProtocolError):
                seen = {}  # not answering yet, or between two rounds
            states = {name: seen[name]["statename"] for name in expected if name in seen}
            if states == expected:
                return seen
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {expected}; last seen {seen}")


def _take_controlling_terminal() -> None:
    # Runs in the child after setsid(): make the pty on fd 0 its controlling terminal.
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """``manage.py supervisor ARGS`` with a pseudo-terminal as its controlling terminal.

    manage.py leads its own session; the test holds the pty's master side, collects
    the output, and can hang up as a closed terminal window would.
    """

    def __init__(self, project: Project, *args: str) -> None:
        import threading

        master, slave = os.openpty()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, str(project.path / "manage.py"), "supervisor", *args],
                cwd=project.path,
                env=project.env(),
                stdin=slave,
                stdout=slave,
                stderr=slave,
                text=True,
                start_new_session=True,
                preexec_fn=_take_controlling_terminal,
            )
        finally:
            os.close(slave)
        project.started.append(self.proc)
        self._master = master
        self._chunks: list[bytes] = []
        self._hang_up = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        import select

        try:
            while not self._hang_up.is_set():
                ready, _, _ = select.select([self._master], [], [], 0.05)
                if not ready:
                    continue
                try:
                    data = os.read(self._master, 4096)
                except OSError:  # EIO: nothing holds the terminal open any more
                    return
                if not data:
                    return
                self._chunks.append(data)
        finally:
            # Closed here, not by another thread: a close while os.read() blocks on the
            # same descriptor would not hang the terminal up.
            os.close(self._master)

    @property
    def text(self) -> str:
        return b"".join(self._chunks).decode(errors="replace").replace("\r\n", "\n")

    def hang_up(self) -> None:
        """Close the master side: the kernel sends SIGHUP to the session leader."""
        self._hang_up.set()
        self._thread.join(timeout=10)

    def finish(self, timeout: float = 20) -> int:
        """Wait for manage.py to exit and its output to be read; return its exit code."""
        code = self.proc.wait(timeout=timeout)
        self._thread.join(timeout=timeout)
        return code
