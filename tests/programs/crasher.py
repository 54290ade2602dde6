"""A child program that fails at once."""

import sys

print("crasher failing", file=sys.stderr, flush=True)
sys.exit(3)
