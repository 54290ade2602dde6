"""Values supervisord accepts but that cannot work: refused, or warned about (pure checks).

``check()`` raises for a value that would misbehave at run time (a negative timeout, no
process, a value big enough to stall the loop, a control channel open to the network);
``warnings()`` lists what may still work (an executable missing now, an unauthenticated
control channel on loopback) for ``manage.py check``.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import shlex
import shutil
from collections.abc import Mapping

from django.core.checks import CheckMessage
from django.core.checks import Warning as CheckWarning

from .. import config
from ..errors import ImpossibleValue, OpenControlChannel
from . import programenv

#: Longest value of any option, in bytes. supervisord copies and re-parses option
#: values on every status call and spawn: a 10 MB ``command`` stalled its loop for a minute.
MAX_VALUE_BYTES = 64 * 1024

#: Options of a process section that must be at least this much.
MINIMUMS = {"startsecs": 0, "startretries": 0, "stopwaitsecs": 0, "numprocs": 1}

_LOCAL_NAMES = frozenset({"localhost"})


def _integer(value: str) -> int | None:
    try:
        return int(value.strip())
    except ValueError:
        return None  # not a number: supervisord's own parser says so


def _check_sizes(merged: config.Merged) -> None:
    for section, values in merged.sections.items():
        for key, value in values.items():
            size = len(value.encode("utf-8", "surrogateescape"))
            if size > MAX_VALUE_BYTES:
                raise ImpossibleValue(
                    f"{merged.where(section)}: [{section}] {key}: value is {size} bytes, "
                    f"over the limit of {MAX_VALUE_BYTES} bytes (64 KiB)"
                )


def _check_minimums(merged: config.Merged) -> None:
    for section, values in merged.sections.items():
        if not section.startswith(config.PROCESS_PREFIXES):
            continue
        for key, minimum in MINIMUMS.items():
            number = _integer(values.get(key, str(minimum)))
            if number is not None and number < minimum:
                raise ImpossibleValue(
                    f"{merged.where(section)}: [{section}] {key} = {values[key]}: "
                    f"must be {minimum} or more"
                )


def _inet_server(merged: config.Merged) -> tuple[str, str] | None:
    """``(host, port option)`` of an ``[inet_http_server]`` without credentials, else None."""
    values = merged.sections.get("inet_http_server")
    if values is None or (values.get("username", "").strip() and values.get("password", "")):
        return None
    port = values.get("port", "").strip()
    host = port.rpartition(":")[0].strip("[]") if ":" in port else ""
    return host, port


def is_loopback(host: str) -> bool:
    """Tell whether ``host`` names only this machine (``*`` and empty mean every interface)."""
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '', '*', or a host name that may resolve anywhere


def _check_inet(merged: config.Merged) -> None:
    found = _inet_server(merged)
    if found is None or is_loopback(found[0]):
        return
    host, port = found
    raise OpenControlChannel(
        f"{merged.where('inet_http_server')}: [inet_http_server] port = {port}: "
        f"listens on {host if host not in ('', '*') else 'every interface'} without "
        "username and password, so anyone who can reach it can stop programs and read "
        "their logs; set username and password, or bind 127.0.0.1"
    )


def check_values(merged: config.Merged) -> None:
    """Raise ``ImpossibleValue`` or ``OpenControlChannel`` for a value that cannot work."""
    _check_sizes(merged)
    _check_minimums(merged)
    _check_inet(merged)


def _expansions(name: str, values: Mapping[str, str], here: str) -> dict[str, object]:
    # What supervisord expands in a command (options.py, processes_from_section).
    expansions: dict[str, object] = {f"ENV_{k}": v for k, v in os.environ.items()}
    numprocs = _integer(values.get("numprocs", "1")) or 1
    expansions.update(
        here=here,
        program_name=name,
        group_name=name,
        host_node_name=platform.node(),
        process_num=_integer(values.get("numprocs_start", "0")) or 0,
        numprocs=numprocs,
    )
    return expansions


def _search_path(values: Mapping[str, str], expansions: Mapping[str, object]) -> str:
    """The PATH supervisord searches for the program: its own ``environment``, else ours."""
    from supervisor.datatypes import dict_of_key_value_pairs

    try:
        environment = dict_of_key_value_pairs(values.get("environment", "") % expansions)
    except (ValueError, KeyError, TypeError):
        environment = {}
    if environment.get("PATH"):
        return str(environment["PATH"])
    # As programenv gives it under manage.py supervisor: the project's scripts first.
    return programenv.with_scripts_first(
        os.environ.get("PATH") or os.defpath, programenv.scripts_dir()
    )


def missing_executable(name: str, values: Mapping[str, str], here: str) -> str | None:
    """Say why the program's executable cannot be found, or None if it can (or we cannot tell)."""
    expansions = _expansions(name, values, here)
    try:
        argv = shlex.split(values.get("command", "") % expansions)
    except (ValueError, KeyError, TypeError):
        return None  # supervisord reports a command it cannot expand or split
    if not argv:
        return None
    program = argv[0]
    if os.path.isabs(program):
        if os.path.isfile(program) and os.access(program, os.X_OK):
            return None
        return f"executable {program} does not exist or is not executable"
    if "/" in program:
        return None  # relative to a directory that may only exist at spawn time
    if shutil.which(program, path=_search_path(values, expansions)) is not None:
        return None
    return f"executable {program!r} is not found on the program's PATH"


def warnings(merged: config.Merged, here: str) -> list[CheckMessage]:
    """Check messages for what may still work: missing executables, unauthenticated TCP."""
    found: list[CheckMessage] = []
    for section, values in merged.sections.items():
        if not section.startswith(config.PROCESS_PREFIXES):
            continue
        name = section.split(":", 1)[1]
        reason = missing_executable(name, values, here)
        if reason is not None:
            found.append(
                CheckWarning(
                    f"program {name!r}: {reason}; supervisord will fail to spawn it",
                    hint="Install it, use an absolute path, or set PATH in the program's "
                    "environment option.",
                    obj=f"{merged.where(section)}: [{section}] command",
                    id="djsupervisor.W003",
                )
            )
    inet = _inet_server(merged)
    if inet is not None:
        found.append(
            CheckWarning(
                f"[inet_http_server] port = {inet[1]} has no username and password: any "
                "local user can stop programs and read their logs",
                hint="Set username and password in [inet_http_server], or use the default "
                "private unix socket.",
                obj=merged.where("inet_http_server"),
                id="djsupervisor.W004",
            )
        )
    return found
