"""Wait for the GO file, then write ~50 MB/s of 80-byte lines for SECONDS seconds.

Usage: flood.py GO SECONDS [READY]; READY, if given, is created first to say we are up.
Shared by the unread-console memory test and benchmark, which must flood alike.
"""

import os
import sys
import time

go, seconds = sys.argv[1], float(sys.argv[2])
if len(sys.argv) > 3:
    open(sys.argv[3], "w").close()
while not os.path.exists(go):
    time.sleep(0.02)
block = b"".join(b"%08d %s\n" % (i, b"f" * 70) for i in range(6250))  # 500 kB
start = time.monotonic()
sent = 0
while time.monotonic() - start < seconds:
    os.write(1, block)
    sent += 1
    # Sleep off any lead over 50 MB/s so the rate holds whoever reads (or not).
    ahead = sent * len(block) / 50e6 - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
os.write(1, b"END\n")
time.sleep(3600)
