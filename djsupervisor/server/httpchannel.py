"""The control channel's HTTP connection, sending a large answer in few loop rounds.

supervisord's channel sends at most 4 KiB per loop round: ``getAllProcessInfo`` over a
thousand programs (~300 KB of XML) took ~75 rounds, each costing O(programs). This one
fills its buffer from the answer's producers up to 1 MiB and hands the socket as much
as it takes; whatever the socket refuses waits for the next writable round, as before.

The socket itself takes only its send buffer per round (208 KiB on Linux by default,
8 KiB for a unix socket on macOS): a 2.4 MB answer (2,000 programs) took 12 rounds, and
during a start-up each round also starts a batch of programs, so the answer came out
only once every program had started. The channel asks for a send buffer the size of
its own (the kernel caps it at its limit), and the loop keeps rounds short while a
client is connected (see ``talking`` and activity.py).

A channel closes its socket once its answer is out: it unregisters it from the poller
first (see poller.py).
"""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Callable
from typing import Any

from supervisor.http import deferring_http_channel
from supervisor.medusa.http_server import http_server

SEND_SIZE = 1 << 20


class WholeAnswerChannel(deferring_http_channel):  # type: ignore[misc]
    ac_out_buffer_size = SEND_SIZE

    def __init__(
        self, server: Any, conn: Any, addr: Any, forget: Callable[[int], None] | None = None
    ) -> None:
        self.forget = forget
        super().__init__(server, conn, addr)
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_SIZE)

    def initiate_send(self) -> None:
        # refill_buffer() takes one producer chunk per call (64 KiB at most): gather
        # until the buffer is full, the answer is complete, or a deferred one is not ready.
        while len(self.ac_out_buffer) < self.ac_out_buffer_size:
            before = (len(self.ac_out_buffer), len(self.producer_fifo))
            self.refill_buffer()
            if (len(self.ac_out_buffer), len(self.producer_fifo)) == before:
                break
        super().initiate_send()

    def close(self) -> None:
        fd = self.__dict__.get("_fileno")
        if fd is not None and self.forget is not None:
            self.forget(fd)
        super().close()


def talking(socket_map: dict[int, Any]) -> bool:
    """Whether a client is connected to a control channel in ``socket_map``.

    From the request's arrival to the answer's last byte the channel stays open; a
    connection kept open by an idle client only makes start-up rounds shorter.
    """
    return any(isinstance(channel, WholeAnswerChannel) for channel in list(socket_map.values()))


def sending(socket_map: dict[int, Any]) -> bool:
    """Whether an answer in ``socket_map`` has bytes the socket could not take yet.

    Not a deferred answer still waiting for its result (``start`` with wait): that one
    waits for the programs, which must go on starting at full speed.
    """
    return any(
        isinstance(channel, WholeAnswerChannel) and channel.ac_out_buffer
        for channel in list(socket_map.values())
    )


def requested(socket_map: dict[int, Any], readable: list[int]) -> bool:
    """Whether a control server or channel is among the ``readable`` descriptors.

    A new connection or a request: not the signal wake-up pipe or the console.
    """
    return any(isinstance(socket_map.get(fd), (http_server, WholeAnswerChannel)) for fd in readable)


def install(httpservers: Any, forget: Callable[[int], None]) -> None:
    """Make every supervisord HTTP server (unix and inet) accept with our channel.

    ``forget(fd)`` unregisters a channel's socket from the poller before it closes.
    """
    for _, server in httpservers:
        if getattr(server, "channel_class", None) is deferring_http_channel:
            server.channel_class = functools.partial(WholeAnswerChannel, forget=forget)
