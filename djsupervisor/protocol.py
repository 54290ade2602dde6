"""What the server side and the client side of djsupervisor both say, in one place.

The server (inside supervisord) writes these values; the clients (``ctl``, the typed
``Supervisor``, ``status --json``, autoreload) read them. Standard library only, and
nothing from djsupervisor, so either side can import it without loading the other.
"""

from __future__ import annotations

from typing import Literal, get_args

# Process states, by name (supervisor.states.ProcessStates).
State = Literal[
    "STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN"
]
STATES: frozenset[str] = frozenset(get_args(State))
#: States of a process on its way up (BACKOFF: between two tries).
STARTING_STATES = frozenset({"STARTING", "BACKOFF"})
#: States supervisorctl counts as running (supervisor.states.RUNNING_STATES).
RUNNING_STATES = frozenset({"RUNNING", "BACKOFF", "STARTING"})

# What the server adds to supervisord's process info (see server/rpc.py).
#: How a waiting reason (the process info's description) starts when the program will
#: never start on its own: a dependency of it failed.
NEVER_STARTS = "not started"
#: The process info key holding a health-checked program's health.
HEALTH_KEY = "health"

# supervisor.xmlrpc.Faults, by value: clients need them without importing supervisor.
SHUTDOWN_STATE = 6
BAD_NAME = 10
SPAWN_ERROR = 50
ALREADY_STARTED = 60
NOT_RUNNING = 70
SUCCESS = 80
CANT_REREAD = 92

# Environment variables.
#: The pid of the Python process that called ``djsupervisor.start()``: supervisord
#: stops with it (``python -m djsupervisor``).
PARENT_PID_ENV = "DJSUPERVISOR_PARENT_PID"
#: Set by supervisord in every program's environment (supervisor's own names).
PROCESS_NAME_ENV = "SUPERVISOR_PROCESS_NAME"
GROUP_NAME_ENV = "SUPERVISOR_GROUP_NAME"
SERVER_URL_ENV = "SUPERVISOR_SERVER_URL"
