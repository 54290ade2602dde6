"""A child program that forks a grandchild; logs both pids, then sleeps until killed.

Usage: forker.py NAME PIDLOG [nofork]: appends ``NAME PID GRANDCHILD_PID`` (0 with
``nofork``) as one line to PIDLOG, so a test knows every process it has to see die.
"""

import os
import sys
import time

name, pidlog = sys.argv[1], sys.argv[2]
grandchild = 0
if "nofork" not in sys.argv[3:]:
    grandchild = os.fork()
    if grandchild == 0:
        while True:
            time.sleep(3600)
# One short O_APPEND write: lines from concurrent programs never interleave.
fd = os.open(pidlog, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, f"{name} {os.getpid()} {grandchild}\n".encode())
os.close(fd)
while True:
    time.sleep(3600)
