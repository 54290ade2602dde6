"""Non-blocking health probes that run inside supervisord's own poll loop.

A probe never blocks the loop: sockets are non-blocking dispatchers in supervisord's
socket map, and a command probe is a spawned process whose exit the loop reaps.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
from collections.abc import Callable
from typing import Any

from ..config.rules import Healthcheck

Done = Callable[[bool, str], None]


class SocketProbe:
    """A TCP connect, optionally followed by an HTTP(S) GET whose status must be < 400."""

    def __init__(
        self,
        check: Healthcheck,
        socket_map: dict[int, Any],
        done: Done,
        forget: Callable[[int], None] | None = None,
    ) -> None:
        self.check = check
        self.done = done
        self.socket_map = socket_map
        #: Unregisters the socket from the poller before it closes (see poller.py).
        self.forget = forget
        self.buffer = b""
        self.connected = False
        self.handshaken = check.kind != "https"
        self.request = b""
        if check.kind in ("http", "https"):
            self.request = (
                f"GET {check.path} HTTP/1.0\r\nHost: {check.host}:{check.port}\r\n"
                "User-Agent: djsupervisor-healthcheck\r\nConnection: close\r\n\r\n"
            ).encode()
        self.sock: Any = socket.socket(
            socket.AF_INET6 if ":" in check.host else socket.AF_INET, socket.SOCK_STREAM
        )
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()
        socket_map[self.fd] = self
        code = self.sock.connect_ex((check.host, check.port))
        if code not in (0, 115, 36, 35):  # 0, EINPROGRESS (Linux / macOS), EAGAIN
            self.finish(False, f"connect failed: {os.strerror(code)}")

    def readable(self) -> bool:
        return self.connected and (not self.handshaken or not self.request)

    def writable(self) -> bool:
        return not self.connected or (self.handshaken and bool(self.request))

    def handle_write_event(self) -> None:
        if not self.connected:
            error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                self.finish(False, f"connect failed: {os.strerror(error)}")
                return
            self.connected = True
            if self.check.kind == "tcp":
                self.finish(True, "port open")
                return
            if self.check.kind == "https":
                context = ssl.create_default_context()
                # A health check talks to our own program, often with a local certificate.
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                self.sock = context.wrap_socket(self.sock, do_handshake_on_connect=False)
                self._handshake()
                return
        if not self.handshaken:
            self._handshake()
            return
        try:
            sent = self.sock.send(self.request)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return
        except OSError as error:
            self.finish(False, f"send failed: {error}")
            return
        self.request = self.request[sent:]

    def _handshake(self) -> None:
        try:
            self.sock.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except (OSError, ssl.SSLError) as error:
            self.finish(False, f"TLS handshake failed: {error}")
            return
        self.handshaken = True

    def handle_read_event(self) -> None:
        if not self.handshaken:
            self._handshake()
            return
        try:
            data = self.sock.recv(4096)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError as error:
            self.finish(False, f"receive failed: {error}")
            return
        self.buffer += data
        if b"\r\n" in self.buffer or not data:
            status = self.buffer.split(b"\r\n", 1)[0].split()
            if len(status) >= 2 and status[1].isdigit():
                code = int(status[1])
                self.finish(code < 400, f"HTTP {code}")
            else:
                self.finish(False, "no HTTP status line")

    def handle_error(self) -> None:
        self.finish(False, "probe error")

    def timeout(self) -> None:
        self.finish(False, f"no answer within {self.check.timeout:g} s")

    def finish(self, ok: bool, detail: str) -> None:
        if self.socket_map.get(self.fd) is self:
            del self.socket_map[self.fd]
            if self.forget is not None:
                self.forget(self.fd)
        with contextlib.suppress(OSError):
            self.sock.close()
        done, self.done = self.done, _ignore
        done(ok, detail)

    def close(self) -> None:
        self.finish(False, "cancelled")


class CommandProbe:
    """A shell command in its own session; exit status 0 means healthy."""

    def __init__(self, check: Healthcheck, done: Done, env: dict[str, str]) -> None:
        self.check = check
        self.done = done
        devnull = os.devnull
        self.pid = os.posix_spawn(
            "/bin/sh",
            ["/bin/sh", "-c", check.command],
            env,
            setsid=True,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_OPEN, 2, devnull, os.O_WRONLY, 0),
            ],
        )

    def exited(self, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        done, self.done = self.done, _ignore
        done(code == 0, f"command exited with {code}")

    def timeout(self) -> None:
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signal.SIGKILL)
        done, self.done = self.done, _ignore
        done(False, f"command took longer than {self.check.timeout:g} s")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signal.SIGKILL)
        self.done = _ignore


def _ignore(ok: bool, detail: str) -> None:
    pass
