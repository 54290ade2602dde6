"""One supervisord per project, and one that stays findable, whatever happens to its files.

The runtime directory can vanish under a running supervisord (an age-based tmp cleaner,
``rm -rf``): its lock file, control socket, pid file and logs go with it. So on Linux the
lock is also an abstract-namespace unix socket, which lives in no directory and is
released by the kernel when its last holder exits; and the running supervisord checks
every few seconds that its runtime directory is there, and if not, recreates it and
binds its control socket again. macOS has no abstract sockets: there the lock file in
the runtime directory is the lock, as before.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..config.rundir import ensure_runtime_dir, open_private
from ..errors import ConfigError, StartError
from . import httpchannel

#: How often (seconds, at most) a running supervisord looks for its runtime directory.
CHECK_INTERVAL = 2.0


def abstract_name(runtime_dir: Path) -> bytes:
    """The lock's abstract socket name: per user and runtime directory (so per project)."""
    digest = hashlib.sha256(str(runtime_dir).encode()).hexdigest()[:32]
    return f"\0djsupervisor-{os.getuid()}-{digest}".encode()


@contextlib.contextmanager
def abstract_lock(runtime_dir: Path, busy_message: str) -> Iterator[None]:
    """Bind the project's abstract socket (Linux), or refuse with ``busy_message``.

    The socket is not inheritable by programs (close-on-exec), but a daemonizing fork
    keeps it: the background supervisord holds it for its whole life.
    """
    if not sys.platform.startswith("linux"):
        yield
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(abstract_name(runtime_dir))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise StartError(busy_message) from None
            raise
        yield
    finally:
        sock.close()


@contextlib.contextmanager
def instance_lock(runtime_dir: Path, lock_path: Path, busy_message: str) -> Iterator[None]:
    """Hold this project's lock for supervisord's lifetime, or refuse to start.

    Checked before supervisord runs at all: its startup deletes AUTO child logs before
    it notices another instance, which would break the running one's ``tail``.
    """
    import fcntl

    with abstract_lock(runtime_dir, busy_message):
        fd = open_private(lock_path, os.O_RDWR | os.O_CREAT, "lock file")
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StartError(busy_message) from None
            yield
        finally:
            os.close(fd)


def held(runtime_dir: Path, lock_path: Path) -> bool:
    """Tell whether a supervisord holds this project's lock, either half of it.

    The abstract socket outlives a removed runtime directory (and its lock file): a
    supervisord whose directory was deleted still counts. Probing binds the name for a
    moment; a start racing this probe is refused as if the instance were running.
    """
    try:
        with abstract_lock(runtime_dir, "held"):  # a no-op where there is none (macOS)
            pass
    except StartError:
        return True
    except OSError:
        pass  # no name to probe here: the lock file tells
    import fcntl

    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the lock, if we got it
    return False


class RuntimeDirWatch:
    """Recreate the runtime directory and rebind the control socket if they vanish.

    ``tick()`` runs on every loop round; it looks at most every ``interval`` seconds,
    with one ``lstat`` per control socket (O(1), whatever the number of programs).
    """

    def __init__(
        self,
        supervisor: Any,
        runtime_dir: Path,
        *,
        interval: float = CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.supervisor = supervisor
        self.runtime_dir = runtime_dir
        self.interval = interval
        self.clock = clock
        self.next_check = clock() + interval

    def tick(self) -> None:
        now = self.clock()
        if now < self.next_check:
            return
        self.next_check = now + self.interval
        options = self.supervisor.options
        # The socket, not the directory: a refused second start may have made the
        # directory again, empty.
        sockets = [c["file"] for c, _ in options.httpservers if c["family"] == socket.AF_UNIX]
        if all(os.path.lexists(path) for path in sockets):
            return
        logger = options.logger
        try:
            ensure_runtime_dir(self.runtime_dir)
            self.restore()
        except (ConfigError, StartError, OSError, ValueError) as error:
            logger.error(f"control socket in {self.runtime_dir} vanished; cannot restore: {error}")
            return
        logger.warn(
            f"control socket in {self.runtime_dir} vanished; recreated it (and the directory)"
        )

    def restore(self) -> None:
        """Bind the unix control sockets again and reopen the logs and pid file by path."""
        options = self.supervisor.options
        unix = [(c, s) for c, s in options.httpservers if c["family"] == socket.AF_UNIX]
        others = [(c, s) for c, s in options.httpservers if c["family"] != socket.AF_UNIX]
        socket_map = options.get_socket_map()
        for _, server in unix:
            # Close the listener and the connections it accepted, as close_httpservers does.
            for dispatcher in list(socket_map.values()):
                if getattr(dispatcher, "server", None) is server:
                    dispatcher.close()
            fd = server.__dict__.get("_fileno")
            if fd is not None:
                options.forget_fd(fd)  # before it closes (see poller.py)
            server.close()
        configs = options.server_configs
        options.server_configs = [c for c, _ in unix]
        try:
            fresh = options.make_http_servers(self.supervisor)
        finally:
            options.server_configs = configs
        httpchannel.install(fresh, options.forget_fd)
        options.httpservers = others + list(fresh)
        # As on SIGUSR2: supervisord's log and AUTO child logs, at their paths again.
        options.reopenlogs()
        for group in self.supervisor.process_groups.values():
            group.reopenlogs()
        options.write_pidfile()
