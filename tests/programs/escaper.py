"""A child program that leaves processes behind in one of the ways a program can.

Usage: escaper.py KIND PIDLOG, KIND one of:

- ``setsid``: a helper daemonizes itself (fork, setsid, fork, the middle one exits);
- ``stubborn``: ignores SIGTERM;
- ``parent``: has two children of its own, one of them ignoring SIGTERM;
- ``plain``: just runs (a program whose health probe is the slow part);
- ``probe``: a health check command that takes an hour.

Every process appends ``KIND PID`` to PIDLOG (one short O_APPEND write, so lines of
concurrent processes never interleave) and then sleeps until killed.
"""

import os
import signal
import sys
import time

kind, pidlog = sys.argv[1], sys.argv[2]


def record(what: str) -> None:
    fd = os.open(pidlog, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{what} {os.getpid()}\n".encode())
    os.close(fd)


def sleep_forever() -> None:
    while True:
        time.sleep(3600)


if kind == "setsid":
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            record("setsid-helper")
            sleep_forever()
        os._exit(0)
    os.wait()
elif kind == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
elif kind == "parent":
    for stubborn in (False, True):
        if os.fork() == 0:
            if stubborn:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            record("parent-child")
            sleep_forever()
record(kind)
sleep_forever()
