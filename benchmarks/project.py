"""A throw-away Django project for benchmarks, and the merged config it yields."""

from __future__ import annotations

import compileall
import configparser
import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .harness import Channel

REPO = Path(__file__).resolve().parent.parent
SETTINGS_MODULE = "benchproj.settings"

MANAGE_PY = """\
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchproj.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""

SETTINGS_PY = """\
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "djsupervisor-benchmarks"
DEBUG = False
INSTALLED_APPS = {apps!r}
DATABASES = {{
    "default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
}}
USE_TZ = True
TIME_ZONE = "UTC"
SUPERVISOR_RUNTIME_DIR = {runtime!r}
"""


def sleep_programs(count: int, *, prefix: str = "p") -> tuple[str, list[str]]:
    """Config text for ``count`` programs running ``sleep 600``, and their names."""
    names = [f"{prefix}{i:03d}" for i in range(count)]
    text = "".join(f"[program:{name}]\ncommand=sleep 600\nstartsecs=0\n\n" for name in names)
    return text, names


@dataclass(frozen=True)
class BenchProject:
    """A generated project: ``manage.py``, settings, apps; its runtime dir is its own."""

    path: Path
    runtime_dir: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        env["PYTHONPATH"] = os.pathsep.join([str(self.path), str(REPO)])
        return env

    def manage_argv(self, *args: str) -> list[str]:
        return [sys.executable, str(self.path / "manage.py"), *args]

    def manage(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``manage.py ARGS``; return its stdout, or raise with its stderr."""
        proc = subprocess.run(
            self.manage_argv(*args),
            cwd=self.path,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"manage.py {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc.stdout


def precompile() -> None:
    """Write the bytecode of the djsupervisor under test, as an install would.

    Projects import it from the checkout (``PYTHONPATH``): with ``PYTHONDONTWRITEBYTECODE``
    in the caller's environment every start would compile it afresh (~60 ms), which
    Django and supervisor, installed with their bytecode, never pay.
    """
    compileall.compile_dir(REPO / "djsupervisor", quiet=1)


def make_project(
    root: Path,
    *,
    conf: str | None = None,
    apps: Mapping[str, str] | None = None,
) -> BenchProject:
    """Write a project under ``root``: ``conf`` as its supervisord.conf, ``apps`` name: conf."""
    precompile()
    package = root / "benchproj"
    package.mkdir(parents=True)
    (root / "manage.py").write_text(MANAGE_PY)
    (package / "__init__.py").write_text("")
    app_names = ["djsupervisor"]
    for name, app_conf in (apps or {}).items():
        management = root / name / "management"
        management.mkdir(parents=True)
        (root / name / "__init__.py").write_text("")
        (management / "__init__.py").write_text("")
        (management / "supervisord.conf").write_text(textwrap.dedent(app_conf))
        app_names.append(name)
    # Short and private to this run: AF_UNIX paths are limited to ~104 bytes. Created
    # up front, as the peer's is: every run, the first included, finds it in place.
    runtime = root / "run"
    runtime.mkdir(mode=0o700)
    (package / "settings.py").write_text(SETTINGS_PY.format(apps=app_names, runtime=str(runtime)))
    if conf is not None:
        (root / "supervisord.conf").write_text(textwrap.dedent(conf))
    return BenchProject(root, runtime)


@dataclass(frozen=True)
class MergedConfig:
    """``manage.py supervisor getconfig`` output, parsed enough to drive and re-home it."""

    text: str

    def _parser(self) -> configparser.RawConfigParser:
        parser = configparser.RawConfigParser(interpolation=None, strict=False)
        parser.read_string(self.text)
        return parser

    def channel(self) -> Channel:
        """The control socket and the plaintext credentials of ``[supervisorctl]``."""
        parser = self._parser()
        url = parser.get("supervisorctl", "serverurl")
        if not url.startswith("unix://"):
            raise ValueError(f"expected a unix:// serverurl, got {url!r}")
        return Channel(
            url[len("unix://") :],
            parser.get("supervisorctl", "username"),
            parser.get("supervisorctl", "password"),
        )

    def logfile(self) -> Path:
        return Path(self._parser().get("supervisord", "logfile"))

    def rehomed(self, runtime_dir: Path) -> MergedConfig:
        """The same config with its own socket, log, pid file and child log dir."""
        parser = self._parser()
        socket_path = runtime_dir / "supervisor.sock"
        parser.set("supervisord", "logfile", str(runtime_dir / "supervisord.log"))
        parser.set("supervisord", "pidfile", str(runtime_dir / "supervisord.pid"))
        parser.set("supervisord", "childlogdir", str(runtime_dir))
        parser.set("unix_http_server", "file", str(socket_path))
        parser.set("supervisorctl", "serverurl", f"unix://{socket_path}")
        out = io.StringIO()
        parser.write(out)
        return MergedConfig(out.getvalue())

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.text)
        return path


def getconfig(project: BenchProject, *args: str) -> MergedConfig:
    return MergedConfig(project.manage("supervisor", "getconfig", *args))
