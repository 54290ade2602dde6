"""Run supervisord's main loop inside this process, fed from the in-memory config."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.db import connections
from supervisor import events, loggers
from supervisor.medusa import asyncore_25 as asyncore
from supervisor.states import SupervisorStates

from ..config import parser, programenv, rundir
from ..config.parser import Loader
from ..errors import StartError
from . import capture, guard, limits, oldlogs, rpc, spawn, spawner
from .console import Console, ConsoleLogHandler
from .logguard import LogGuard, guard_logger
from .loop import ProjectSupervisor
from .pipes import OutputPipes
from .poller import make_poller, unregister_fd

#: The signals supervisord takes over (options.setsignals) and never gives back.
HANDLED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGCHLD,
    signal.SIGUSR2,
)


class Detached(Exception):
    """Raised in the parent after supervisord forked into the background."""

    def __init__(self, pid: int) -> None:
        super().__init__(pid)
        self.pid = pid


class ProjectServerOptions(parser.ParsingOptions):
    """supervisord's options for running it here: the parser's, plus logging, the pid
    file, spawning, daemonizing, signals and the reload check."""

    watchdog: guard.Watchdog | None = None
    rpcinterface_factories: list[Any]
    #: The process whose spawn() is running, so fork() can use posix_spawn for it.
    spawning: Any = None
    #: The previous run's AUTO child logs, removed by the loop once it is idle.
    old_logs: oldlogs.OldLogs | None = None
    #: Set by the supervisord instance: the spawns its loop rounds hand over.
    spawn_batch: spawn.SpawnBatch | None = None

    def __init__(
        self,
        load: Loader,
        configfile: str,
        *,
        hangup_stops: bool = False,
        console: Console | None = None,
        project_dir: str | None = None,
        runtime_dir: str | None = None,
        log_guard: LogGuard | None = None,
    ) -> None:
        super().__init__(load, configfile, runtime_dir=runtime_dir)
        # epoll on Linux: a loop round no longer hands the kernel every program's pipes.
        self.poller = make_poller(self)
        self.project_dir = project_dir
        self.hangup_stops = hangup_stops
        self.console = console
        self._mood = SupervisorStates.RUNNING
        self.supervisord_pid = os.getpid()
        self.supervisord_uid = os.getuid()
        self.log_guard = log_guard or LogGuard()
        self.log_guard.report = self._report_dropped_logs
        self.output_pipes = OutputPipes()

    @property
    def mood(self) -> int:
        return int(self._mood)

    @mood.setter
    def mood(self, value: int) -> None:
        # A reload (SIGHUP, supervisorctl reload) stops every program before the new
        # config is read; with a broken config nothing would come back. Check first.
        if value == SupervisorStates.RESTARTING and getattr(self, "logger", None) is not None:
            try:
                self.check_config()
            except Exception as error:  # never let a reload check crash the loop
                self.logger.error(f"reload refused, keeping the running programs: {error}")
                return
        self._mood = value

    def check_config(self) -> None:
        """Raise ``ConfigError`` unless the config sources, as they are now, are valid."""
        limits.check_reload(
            build_options(self._load, self.configfile, runtime_dir=self.runtime_dir)
        )

    def realize(self, *args: Any, **kwargs: Any) -> None:
        super().realize(*args, **kwargs)
        factories: list[Any] = self.rpcinterface_factories
        self.rpcinterface_factories = rpc.swap_factories(factories)

    def process_config(self, do_usage: bool = True) -> None:
        super().process_config(do_usage=do_usage)
        # Set on every (re)read alike, so reread/update see no spurious changes.
        for group in self.process_group_configs:
            for process in group.process_configs:
                if self.console is not None and not self.console.quiet:
                    capture.tap(process, self.console)
                if self.project_dir is not None:
                    programenv.apply(process, self.project_dir)

    def clear_autochildlogdir(self) -> None:
        # Only list them: deleting them right before this run's are created made the
        # creation slow (oldlogs.py). New logs reuse them, the loop removes the rest.
        try:
            private = not rundir.others_can_write(os.stat(self.childlogdir))
        except OSError:
            private = False
        self.old_logs = oldlogs.OldLogs.listed(
            self.childlogdir,
            self.identifier,
            self.logger.warn,
            lambda: oldlogs.current_logs(self.process_group_configs),
            reusable=private,
        )

    def mktempfile(self, suffix: str, prefix: str, dir: str) -> str:
        # A new AUTO log on an old one's inode, in a directory only we can write to
        # (oldlogs.py); otherwise supervisord's mkstemp.
        if self.old_logs is not None and dir == self.childlogdir:
            reused = self.old_logs.reuse(prefix, suffix, dir)
            if reused is not None:
                return reused
        name: str = super().mktempfile(suffix, prefix, dir)
        return name

    def make_logger(self) -> None:
        # supervisord opens its log file unchecked: a bad path would be a traceback.
        if self.logfile != "syslog":
            rundir.preopen("log file", self.logfile, self.runtime_dir)
        try:
            self._make_logger()
        except OSError as error:
            raise StartError(f"cannot open log file {self.logfile}: {error.strerror}") from None
        guard_logger(self.logger, self.log_guard.meter("supervisord"))

    def getLogger(self, *args: Any, **kwargs: Any) -> Any:
        # Called by a process' dispatchers while it spawns: its log files get guarded.
        name = self.spawning.config.name if self.spawning is not None else "supervisord"
        return self.log_guard.logger(name, *args, **kwargs)

    def _report_dropped_logs(self, text: str) -> None:
        if getattr(self, "logger", None) is not None:
            self.logger.warn(text)

    def readfd(self, fd: int) -> bytes:
        # Programs' output pipes, read by their dispatchers: see pipes.py.
        return self.output_pipes.read(fd)

    def check_pidfile(self) -> None:
        """Fail now, before any socket opens, if the pid file cannot be written later."""
        existed = os.path.lexists(self.pidfile)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        os.close(rundir.open_guarded("pid file", self.pidfile, flags, self.runtime_dir, "write"))
        if not existed:
            os.unlink(self.pidfile)

    def write_pidfile(self) -> None:
        # supervisord only logs a failure and runs on, unfindable by its pid file.
        pid = os.getpid()
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        fd = rundir.open_guarded("pid file", self.pidfile, flags, self.runtime_dir, "write")
        try:
            with open(fd, "w") as stream:
                stream.write(f"{pid}\n")
        except OSError as error:
            raise StartError(f"cannot write pid file {self.pidfile}: {error.strerror}") from None
        self.unlink_pidfile = True
        self.logger.info(f"supervisord started with pid {pid}")

    def _make_logger(self) -> None:
        if self.console is None:
            super().make_logger()
            return
        # supervisord's own messages go to the console (instead of its raw stdout
        # handler) and, as always, to its log file.
        self.logger = self.log_guard.logger("supervisord", self.loglevel)
        handler = ConsoleLogHandler(self.console)
        handler.setLevel(self.loglevel)
        self.logger.addHandler(handler)
        loggers.handle_file(
            self.logger,
            self.logfile,
            "%(asctime)s %(levelname)s %(message)s\n",
            rotating=bool(self.logfile_maxbytes),
            maxbytes=self.logfile_maxbytes,
            backups=self.logfile_backups,
        )
        for msg in self.parse_criticals:
            self.logger.critical(msg)
        for msg in self.parse_warnings:
            self.logger.warn(msg)
        for msg in self.parse_infos:
            self.logger.info(msg)

    def get_signal(self) -> int | None:
        sig: int | None = super().get_signal()
        if sig == signal.SIGHUP and self.hangup_stops:
            self.logger.warn("received SIGHUP: the terminal closed, stopping everything")
            return signal.SIGTERM
        return sig

    def fork(self) -> int:
        if self.spawning is not None:
            env = spawn.child_environment(self, self.spawning)
            for key, value in self.ctl_credentials.items():
                env.setdefault(key, value)
            pid = spawn.fast_spawn(self, self.spawning, env, HANDLED_SIGNALS)
            if isinstance(pid, spawn.Pending):
                raise pid  # the batch finishes this spawn (spawn.SpawnBatch)
            if pid is not None:
                if self.watchdog is not None:
                    self.watchdog.add(pid)
                return pid
        return self.fork_here()

    def stat(self, filename: str) -> os.stat_result:
        batch = self.spawn_batch
        return batch.stat(filename) if batch is not None else os.stat(filename)

    def fork_here(self) -> int:
        """supervisord's own fork (its child execs in ``Subprocess._spawn_as_child``)."""
        self.supervisord_pid = os.getpid()
        self.supervisord_uid = os.getuid()
        # A signal that lands between fork and exec would reach supervisord's Python
        # handler in the child and be lost: block them around fork, and give the
        # child default dispositions before unblocking, so such a signal takes effect.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        pid = spawner.fork()
        if pid == 0:
            for sig in HANDLED_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if pid > 0 and self.watchdog is not None:
            self.watchdog.add(pid)  # the child becomes its own process group
        return pid

    def close_fd(self, fd: int) -> None:
        # An epoll registration outlives close() while a fork holds a copy of the file,
        # and cannot be removed once the number is closed: unregister first (poller.py).
        # supervisord closes a program's pipes here (when it is reaped, or its spawn
        # failed); a program's child closes every inherited one here before exec.
        self.forget_fd(fd)
        self.output_pipes.forget(fd)
        super().close_fd(fd)

    def forget_fd(self, fd: int) -> None:
        """Unregister ``fd`` from the poller: call it before ``fd`` is closed."""
        unregister_fd(self.poller, fd)

    def execve(self, filename: str, argv: list[str], env: dict[str, str]) -> None:
        # supervisor.childutils (superlance & co.) read the credentials from the
        # environment; give them to programs running as our own user only.
        if os.getuid() == self.supervisord_uid:
            for key, value in self.ctl_credentials.items():
                env.setdefault(key, value)
        guard.die_with_parent(self.supervisord_pid)
        os.execve(filename, argv, env)

    def daemonize(self) -> None:
        # supervisord's own daemonize() makes the parent os._exit(0) at once; ours
        # returns to the caller, which waits until the daemon answers.
        self.poller.before_daemonize()
        flush_std_streams()
        pid = os.fork()
        if pid:
            # The listening sockets are shared with the daemon: close our copies
            # without asyncore's close(), whose shutdown() would hang up the daemon's.
            for dispatcher in list(self.get_socket_map().values()):
                dispatcher.del_channel()
                dispatcher.socket.close()
            self.httpservers = ()
            self.unlink_socketfiles = False
            self.unlink_pidfile = False
            raise Detached(pid)
        self.logger.info("daemonizing the supervisord process")
        if self.directory:
            os.chdir(self.directory)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        os.setsid()
        os.umask(self.umask)
        self.poller.after_daemonize()


def build_options(load: Loader, configfile: str, **kwargs: Any) -> ProjectServerOptions:
    """Build and realize supervisord's options; a bad config raises ``ConfigError``."""
    options = ProjectServerOptions(load, configfile, **kwargs)
    # Explicit args: with None, getopt would parse manage.py's own sys.argv.
    options.realize(args=[])
    return options


@contextlib.contextmanager
def process_state() -> Iterator[None]:
    """Give back what supervisord takes from the process: signal handlers, umask, globals."""
    handlers = {sig: signal.getsignal(sig) for sig in HANDLED_SIGNALS}
    umask = os.umask(0o022)
    os.umask(umask)
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        os.umask(umask)
        events.clear()
        for dispatcher in list(asyncore.socket_map.values()):
            with contextlib.suppress(Exception):
                dispatcher.close()
        asyncore.socket_map.clear()


def has_terminal() -> bool:
    """Tell whether this process has a controlling terminal."""
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        return False
    return True


def run_rounds(
    load: Loader,
    configfile: str,
    *,
    daemonize: bool = False,
    hangup_stops: bool = False,
    console: Console | None = None,
    project_dir: str | None = None,
    runtime_dir: str | None = None,
) -> str | None:
    """Run supervisord until it shuts down, re-reading the config on every restart.

    Mirrors ``supervisor.supervisord.main``. With ``daemonize``, the caller's process
    gets ``Detached`` once the background process is forked. Returns why supervisord
    stopped on its own (an essential program gone), or ``None`` after a normal stop.
    """
    first = True
    log_guard = LogGuard()
    while True:
        options = build_options(
            load,
            configfile,
            hangup_stops=hangup_stops and not daemonize,
            console=None if daemonize else console,
            project_dir=project_dir,
            runtime_dir=runtime_dir,
            log_guard=log_guard,
        )
        options.nodaemon = not daemonize
        options.first = first
        limits.ensure_fds(options)
        options.check_pidfile()
        options.test = False
        # Django's connections must not be shared with children or the daemon.
        connections.close_all()
        supervisor = ProjectSupervisor(options)
        try:
            supervisor.main()
        except asyncore.ExitNow:
            pass
        finally:
            options.close_httpservers()
            if getattr(options, "logger", None) is not None:
                options.close_logger()
        first = False
        if options.mood < SupervisorStates.RESTARTING:
            return supervisor.orchestrator.exit_reason


def wait_ready(pid: int, is_up: Callable[[], bool], timeout: float) -> None:
    """Wait until the daemon answers; raise ``StartError`` if it dies or hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            raise StartError(f"supervisord exited during startup (status {code}); see its log")
        if is_up():
            return
        time.sleep(0.02)
    raise StartError(f"supervisord did not answer within {timeout:.0f} s; see its log")


def flush_std_streams() -> None:
    """Flush Python's buffers so a fork does not write them twice."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
