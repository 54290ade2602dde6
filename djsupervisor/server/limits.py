"""Enough file descriptors for every configured process, or a refusal before any starts.

supervisord raises the soft ``RLIMIT_NOFILE`` to ``minfds`` (1024 by default) whatever the
configuration needs; past that, spawns fail one by one with EMFILE and the programs left
over stay FATAL (5,000 programs under ``ulimit -n 20000``: 3,997 started).
"""

from __future__ import annotations

import os
import resource
from typing import Any

from ..errors import ConfigError, StartError

#: Descriptors beyond the estimate: a spawn's six transient pipe ends, RPC and HTTP
#: connections, the poller, Django's own (database, autoreload) and a health probe or two.
MARGIN = 64


def _open_now() -> int:
    try:
        return len(os.listdir("/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"))
    except OSError:
        return 0


def per_process(pconfig: Any) -> int:
    """Descriptors supervisord holds for one running process: pipe ends and log files."""
    redirect = bool(getattr(pconfig, "redirect_stderr", False))
    # stdin's write end, stdout's read end, and stderr's unless it goes to stdout.
    count = 2 if redirect else 3
    count += 1 if getattr(pconfig, "stdout_logfile", None) else 0
    if not redirect:
        count += 1 if getattr(pconfig, "stderr_logfile", None) else 0
    return count


def needed(options: Any) -> tuple[int, int]:
    """``(descriptors needed, processes configured)`` for realized supervisord ``options``."""
    total = _open_now() + MARGIN + len(getattr(options, "server_configs", ()) or ())
    processes = 0
    for group in options.process_group_configs:
        if getattr(group, "socket_config", None) is not None:
            total += 1  # an fcgi-program's shared socket
        for pconfig in group.process_configs:
            processes += 1
            total += per_process(pconfig)
    return total, processes


def ensure_fds(options: Any) -> None:
    """Raise the soft fd limit to what ``options`` need, or refuse to start with one line.

    ``minfds`` is honoured as far as the hard limit allows: the refusal is for processes
    that could not all run, not for supervisord's default wish of 1024.
    """
    required, processes = needed(options)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < required:
        raise StartError(_refusal(required, processes, hard))
    wanted = max(required, int(getattr(options, "minfds", 0) or 0))
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    # supervisord's own set_rlimits_or_exit() would refuse a minfds over the hard limit.
    options.minfds = wanted
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            # macOS caps the soft limit at kern.maxfilesperproc whatever the hard limit says.
            if soft < required:
                raise StartError(_refusal(required, processes, soft)) from None
            options.minfds = soft


def check_reload(options: Any) -> None:
    """Like ``ensure_fds``, but a config that needs too many is a refused reload."""
    try:
        ensure_fds(options)
    except StartError as error:
        raise ConfigError(str(error)) from None


def _refusal(required: int, processes: int, available: int) -> str:
    return (
        f"not enough file descriptors: {required} needed for {processes} processes, "
        f"{available} available (ulimit -n); raise the limit or configure fewer processes"
    )
