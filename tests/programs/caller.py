"""A child program: call supervisord back through supervisor.childutils, report, sleep."""

import os
import sys
import time

from supervisor import childutils

name = sys.argv[1] if len(sys.argv) > 1 else "caller"
try:
    rpc = childutils.getRPCInterface(os.environ)
    state = rpc.supervisor.getState()["statename"]
    print(f"{name} sees supervisord {state}", flush=True)
except Exception as error:  # report whatever it is; the test asserts on this line
    print(f"{name} failed: {type(error).__name__}: {error}", flush=True)
while True:
    time.sleep(3600)
