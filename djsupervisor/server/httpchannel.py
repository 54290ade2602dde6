"""The control channel's HTTP connection, sending a large answer in few loop rounds.

supervisord's channel sends at most 4 KiB per loop round: ``getAllProcessInfo`` over a
thousand programs (~300 KB of XML) took ~75 rounds, each costing O(programs). This one
fills its buffer from the answer's producers up to 1 MiB and hands the socket as much
as it takes; whatever the socket refuses waits for the next writable round, as before.
"""

from __future__ import annotations

from typing import Any

from supervisor.http import deferring_http_channel

SEND_SIZE = 1 << 20


class WholeAnswerChannel(deferring_http_channel):  # type: ignore[misc]
    ac_out_buffer_size = SEND_SIZE

    def initiate_send(self) -> None:
        # refill_buffer() takes one producer chunk per call (64 KiB at most): gather
        # until the buffer is full, the answer is complete, or a deferred one is not ready.
        while len(self.ac_out_buffer) < self.ac_out_buffer_size:
            before = (len(self.ac_out_buffer), len(self.producer_fifo))
            self.refill_buffer()
            if (len(self.ac_out_buffer), len(self.producer_fifo)) == before:
                break
        super().initiate_send()


def install(httpservers: Any) -> None:
    """Make every supervisord HTTP server (unix and inet) accept with our channel."""
    for _, server in httpservers:
        if getattr(server, "channel_class", None) is deferring_http_channel:
            server.channel_class = WholeAnswerChannel
