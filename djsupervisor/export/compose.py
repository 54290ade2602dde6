"""``export compose``: the programs as a Docker Compose file (compose-spec).

Each service runs ``--image``; the network, volumes and build are the user's to add
(an override file), since supervisord has no notion of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..config.rules import Healthcheck
from . import UsageError
from .model import Service, check_compose_names, python

CONDITIONS = {
    "started": "service_started",
    "healthy": "service_healthy",
    "completed": "service_completed_successfully",
}

_PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def seconds(value: float) -> str:
    """A compose duration."""
    return f"{value:g}s"


def probe_test(check: Healthcheck) -> list[str]:
    """A healthcheck ``test`` that needs no curl: the project's own interpreter probes."""
    if check.kind == "cmd":
        return ["CMD-SHELL", check.command]
    if check.kind == "tcp":
        code = (
            f"import socket; socket.create_connection(({check.host!r}, {check.port}), "
            f"{check.timeout:g}).close()"
        )
    else:
        url = f"{check.kind}://{check.host}:{check.port}{check.path}"
        # Like djsupervisor's own https check, the certificate is not verified;
        # urlopen fails on a 4xx/5xx answer.
        code = (
            "import ssl, urllib.request as u; "
            f"u.urlopen({url!r}, timeout={check.timeout:g}, "
            "context=ssl._create_unverified_context())"
        )
    return ["CMD", python(), "-c", code]


def service(made: Service, image: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"image": image, "command": made.argv}
    if made.directory:
        spec["working_dir"] = made.directory
    if made.environment:
        spec["environment"] = dict(made.environment)
    if made.uid is not None:
        spec["user"] = str(made.uid)
    spec["restart"] = made.restart
    if made.replicas > 1:
        spec["deploy"] = {"replicas": made.replicas}
    if not made.autostart:
        # Started only when asked for: 'docker compose --profile manual up'.
        spec["profiles"] = ["manual"]
    if made.depends_on:
        spec["depends_on"] = {
            name: {"condition": CONDITIONS[condition]} for name, condition in made.depends_on
        }
    check = made.rules.healthcheck
    if check is not None:
        health: dict[str, Any] = {
            "test": probe_test(check),
            "interval": seconds(check.interval),
            "timeout": seconds(check.timeout),
            "retries": check.retries,
        }
        if check.start_period:
            health["start_period"] = seconds(check.start_period)
        spec["healthcheck"] = health
        if made.rules.healthcheck_restart:
            made.warnings.append("healthcheck_restart=true: compose does not restart on it")
    spec["stop_signal"] = f"SIG{made.stopsignal}"
    spec["stop_grace_period"] = seconds(made.stopwaitsecs)
    if made.oneshot and made.startretries:
        made.warnings.append(f"startretries={made.startretries}: a oneshot runs once")
    if made.rules.essential:
        made.warnings.append(
            f"essential=true: run 'docker compose up --exit-code-from {made.name}' "
            "to stop everything when it exits"
        )
    return spec


def compose(made: Sequence[Service], name: str, image: str) -> dict[str, Any]:
    """The compose file as a dict."""
    if not _PROJECT_RE.match(name):
        raise UsageError(
            f"export compose: {name!r} cannot name a Compose project; pass --name with "
            "lowercase letters, digits, '_' or '-'"
        )
    check_compose_names(made)
    return {"name": name, "services": {s.name: service(s, image) for s in made}}
