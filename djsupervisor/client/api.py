"""Start, connect to and inspect a project's supervisord from Python."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, TypedDict

from .. import checks, cli, config
from ..config import rundir
from ..config.project import Project, assemble, ensure_runtime_dir, locate, merged_sections
from ..errors import StartError, SupervisorError
from ..protocol import PARENT_PID_ENV
from .channel import address
from .info import ProcessInfo, UpdateResult
from .supervisor import Supervisor

__all__ = [
    "ProcessInfo",
    "StartOptions",
    "Supervisor",
    "UpdateResult",
    "connect",
    "get_merged_config",
    "start",
]

#: The file, in the runtime directory, a started supervisord's own messages go to.
CONSOLE_LOG = "console.log"


class StartOptions(TypedDict, total=False):
    """``start()``'s keyword arguments, for code that passes them around."""

    project_dir: str | Path | None
    config_file: str | Path | None
    launch: Sequence[str]
    nolaunch: Sequence[str]
    exclude: Sequence[str]
    include: Sequence[str]
    autoreload: bool | Sequence[str]
    pidfile: str | Path | None
    logfile: str | Path | None
    env_file: Sequence[str | Path]
    wait: bool | Literal["healthy"]
    timeout: float


def _setup_django() -> None:
    """Set Django up from DJANGO_SETTINGS_MODULE unless the caller already did."""
    from django.apps import apps

    if not apps.ready:
        import django

        django.setup()


def _options(
    launch: Sequence[str],
    nolaunch: Sequence[str],
    exclude: Sequence[str],
    include: Sequence[str],
    autoreload: bool | Sequence[str],
    pidfile: str | Path | None = None,
    logfile: str | Path | None = None,
    env_file: Sequence[str | Path] = (),
) -> config.Options:
    """The run options, as the command builds them (``autoreload=False``: ``--noreload``)."""
    names = () if isinstance(autoreload, bool) else autoreload
    return cli.run_options(
        launch=launch,
        nolaunch=nolaunch,
        exclude=exclude,
        include=include,
        autoreload=names,
        noreload=autoreload is False,
        pidfile=pidfile,
        logfile=logfile,
        env_file=env_file,
    )


def _channel(project: Project, opts: config.Options) -> tuple[str, str | None, str | None]:
    """The control channel's URL and credentials; a config that does not build raises."""

    def load() -> config.Merged:
        return merged_sections(project, opts)

    return address(load, str(project.config_file))


# get_merged_config() and start() spell their keyword parameters out rather than take
# ``**kwargs: Unpack[StartOptions]``: help(), IDEs and inspect.signature show them, and
# Unpack needs Python 3.11. The logic is shared (_options, cli.run_options); the lists
# are kept equal by tests/client/test_run_options.py.
def get_merged_config(
    *,
    project_dir: str | Path | None = None,
    config_file: str | Path | None = None,
    launch: Sequence[str] = (),
    nolaunch: Sequence[str] = (),
    exclude: Sequence[str] = (),
    include: Sequence[str] = (),
    autoreload: bool | Sequence[str] = False,
    pidfile: str | Path | None = None,
    logfile: str | Path | None = None,
    env_file: Sequence[str | Path] = (),
) -> str:
    """Return the merged configuration text supervisord would get (``getconfig``)."""
    _setup_django()
    project = locate(project_dir, config_file)
    opts = _options(launch, nolaunch, exclude, include, autoreload, pidfile, logfile, env_file)
    return assemble(project, opts)


def connect(
    *, project_dir: str | Path | None = None, config_file: str | Path | None = None
) -> Supervisor:
    """Return a handle on the project's running supervisord (``--daemonize``d, say).

    Nothing is contacted yet: calls on the handle raise ``NotRunning`` when nothing runs.
    """
    _setup_django()
    return Supervisor(*_channel(locate(project_dir, config_file), config.Options()))


def _settings_module() -> str:
    from django.conf import settings

    module = getattr(settings, "SETTINGS_MODULE", None) or os.environ.get("DJANGO_SETTINGS_MODULE")
    if not module:
        raise StartError(
            "start() runs supervisord with your settings module, but Django was configured "
            "without one (settings.configure()); set DJANGO_SETTINGS_MODULE"
        )
    return str(module)


def _child_env() -> dict[str, str]:
    """The caller's environment, settings module and import path, for the child."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = _settings_module()
    path = [os.path.abspath(entry or os.curdir) for entry in sys.path]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    if threading.current_thread() is threading.main_thread():
        # The kernel's parent-death signal fires when the *thread* that forked dies:
        # only the main thread lives as long as the caller.
        env[PARENT_PID_ENV] = str(os.getpid())
    else:
        env.pop(PARENT_PID_ENV, None)
    return env


def _command(project: Project, config_file: str | Path | None, opts: config.Options) -> list[str]:
    args = [sys.executable, "-m", "djsupervisor", "--quiet", f"--project-dir={project.directory}"]
    if config_file is not None:
        args.append(f"--config-file={project.config_file}")
    args.extend(cli.command_line(opts))
    return args


def _wait_answering(handle: Supervisor, pid: int, deadline: float) -> None:
    """Wait until our own supervisord (not another instance) answers on the channel."""
    while True:
        try:
            if handle._call("supervisor.getPID") == pid:
                return
        except SupervisorError:
            pass
        handle._raise_if_exited("supervisord exited during startup")
        if time.monotonic() >= deadline:
            raise StartError(f"supervisord did not answer in time; see {handle.console_log}")
        time.sleep(0.02)


def start(
    *,
    project_dir: str | Path | None = None,
    config_file: str | Path | None = None,
    launch: Sequence[str] = (),
    nolaunch: Sequence[str] = (),
    exclude: Sequence[str] = (),
    include: Sequence[str] = (),
    autoreload: bool | Sequence[str] = False,
    pidfile: str | Path | None = None,
    logfile: str | Path | None = None,
    env_file: Sequence[str | Path] = (),
    wait: bool | Literal["healthy"] = True,
    timeout: float = 30.0,
) -> Supervisor:
    """Run the project's supervisord in a background process; return a handle on it.

    supervisord runs as ``manage.py supervisor`` would, with your settings module, in
    its own session (your signals and terminal stay yours), and stops when your
    process dies. Returns once it answers and, with ``wait``, every autostart program
    has left STARTING; with ``wait="healthy"``, also once every program with a
    ``healthcheck`` is healthy. Raises ``ConfigError`` for every configuration problem,
    before starting anything, and ``StartError`` (with supervisord's reason) when it
    cannot start.
    """
    _setup_django()
    project = locate(project_dir, config_file)
    opts = _options(launch, nolaunch, exclude, include, autoreload, pidfile, logfile, env_file)
    # Every configuration problem is a ConfigError, found here as 'manage.py check'
    # finds it, not a StartError after the child has failed on it.
    checks.validate(project, opts)
    channel = _channel(project, opts)
    if Supervisor(*channel)._answers():
        raise StartError(
            f"supervisord is already running for this project ({channel[0]}); "
            "use djsupervisor.connect()"
        )
    ensure_runtime_dir(project.runtime_dir)
    console_log = project.runtime_dir / CONSOLE_LOG
    deadline = time.monotonic() + timeout
    # Never through a symlink planted in the runtime directory.
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    with open(rundir.open_private(console_log, flags, "console log"), "ab") as output:
        offset = output.tell()
        process = subprocess.Popen(
            _command(project, config_file, opts),
            env=_child_env(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    handle = Supervisor(*channel, process=process, console_log=console_log, console_offset=offset)
    try:
        _wait_answering(handle, process.pid, deadline)
        if wait:
            try:
                handle._wait_autostarted(max(deadline - time.monotonic(), 0.0))
                if wait == "healthy":
                    handle.wait_healthy(timeout=max(deadline - time.monotonic(), 0.0))
            except SupervisorError as error:
                handle._raise_if_exited("supervisord exited during startup")
                raise StartError(str(error)) from None
    except BaseException:
        handle.terminate()
        raise
    return handle


def connect_here() -> Supervisor:
    """Return a handle on this project's supervisord, without contacting it.

    A program supervisord runs gets the channel in its environment
    (``SUPERVISOR_SERVER_URL``, ``SUPERVISOR_USERNAME``, ``SUPERVISOR_PASSWORD``): use
    it, so a page served by the web program talks to the supervisord that runs it.
    Elsewhere (``runserver`` in a terminal), derive it from the project's settings, as
    ``manage.py supervisor`` does.
    """
    url = os.environ.get("SUPERVISOR_SERVER_URL")
    if url:
        return Supervisor(
            url, os.environ.get("SUPERVISOR_USERNAME"), os.environ.get("SUPERVISOR_PASSWORD")
        )
    return connect()
