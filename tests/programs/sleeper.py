"""A child program: say hello on stdout and stderr, then sleep until signalled."""

import sys
import time

name = sys.argv[1] if len(sys.argv) > 1 else "sleeper"
print(f"{name} started", flush=True)
print(f"{name} stderr line", file=sys.stderr, flush=True)
while True:
    time.sleep(3600)
