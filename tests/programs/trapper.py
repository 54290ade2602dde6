"""A child program: report signals on stdout, then exit or carry on as told.

Usage: trapper.py NAME SIG=ACTION...  where ACTION is ``exit`` (say so, exit 0) or
``report`` (say so, keep running); e.g. ``trapper.py t TERM=report USR1=report``.
"""

import signal
import sys
import time

name = sys.argv[1]
actions = dict(arg.split("=", 1) for arg in sys.argv[2:])


def handle(signum: int, frame: object) -> None:
    signame = signal.Signals(signum).name
    print(f"{name} got {signame}", flush=True)
    if actions[signame[3:]] == "exit":
        sys.exit(0)


for sig in actions:
    signal.signal(getattr(signal, f"SIG{sig}"), handle)
print(f"{name} started", flush=True)
while True:
    time.sleep(3600)
