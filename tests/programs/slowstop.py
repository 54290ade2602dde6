"""A child program that takes a while to stop, logging when it is told and when it goes.

Usage: slowstop.py NAME EVENTLOG: appends ``NAME ready|term|exit TIME`` lines
(``time.monotonic()``, system-wide on Linux) to EVENTLOG; on SIGTERM it waits 0.3 s
before exiting, so stops of programs signalled together overlap.
"""

import os
import signal
import sys
import time

name, eventlog = sys.argv[1], sys.argv[2]


def log(event: str) -> None:
    fd = os.open(eventlog, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{name} {event} {time.monotonic():.6f}\n".encode())
    os.close(fd)


def stop(signum: int, frame: object) -> None:
    log("term")
    time.sleep(0.3)
    log("exit")
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
log("ready")
while True:
    time.sleep(3600)
