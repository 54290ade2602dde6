"""A child program: echo every stdin line back on stdout, prefixed with its name."""

import sys

name = sys.argv[1] if len(sys.argv) > 1 else "echoer"
print(f"{name} started", flush=True)
for line in sys.stdin:
    print(f"{name} got {line.strip()}", flush=True)
