"""Orchestration options of ``[program:x]`` sections, parsed and validated (pure).

``depends_on``, ``healthcheck*``, ``oneshot`` and ``essential`` are djsupervisor's own
keys: supervisord ignores keys it does not know, so ``getconfig`` stays a valid config.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Literal, cast
from urllib.parse import urlsplit

from .. import config
from ..errors import ConfigError, UnknownReference

Condition = Literal["started", "healthy", "completed"]
CONDITIONS: tuple[Condition, ...] = ("started", "healthy", "completed")
_NAME_RE = re.compile(r"^[^\s:]+$")


@dataclass(frozen=True)
class Dependency:
    name: str
    condition: Condition = "started"

    def __str__(self) -> str:
        return self.name if self.condition == "started" else f"{self.name}:{self.condition}"


@dataclass(frozen=True)
class Healthcheck:
    kind: Literal["tcp", "http", "https", "cmd"]
    host: str = ""
    port: int = 0
    path: str = "/"
    command: str = ""
    interval: float = 2.0
    timeout: float = 2.0
    retries: int = 3
    start_period: float = 0.0


@dataclass(frozen=True)
class Rules:
    depends_on: tuple[Dependency, ...] = ()
    healthcheck: Healthcheck | None = None
    healthcheck_restart: bool = False
    oneshot: bool = False
    essential: bool = False


def _number(where: str, key: str, value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{where}: {key} = {value}: not a number") from None
    if number < 0:
        raise ConfigError(f"{where}: {key} = {value}: must not be negative")
    return number


def parse_healthcheck(where: str, values: dict[str, str]) -> Healthcheck | None:
    """Parse ``healthcheck = tcp://H:P | http(s)://H:P/PATH | cmd:COMMAND`` and its knobs."""
    spec = values.get("healthcheck", "").strip()
    if not spec:
        return None
    knobs = {
        "interval": _number(where, "healthcheck_interval", values.get("healthcheck_interval"), 2),
        "timeout": _number(where, "healthcheck_timeout", values.get("healthcheck_timeout"), 2),
        "retries": int(_number(where, "healthcheck_retries", values.get("healthcheck_retries"), 3)),
        "start_period": _number(
            where, "healthcheck_start_period", values.get("healthcheck_start_period"), 0
        ),
    }
    if knobs["retries"] < 1:
        raise ConfigError(f"{where}: healthcheck_retries must be at least 1")
    if spec.startswith("cmd:"):
        command = spec[4:].strip()
        if not command:
            raise ConfigError(f"{where}: healthcheck = {spec}: empty command")
        return Healthcheck("cmd", command=command, **knobs)  # type: ignore[arg-type]
    url = urlsplit(spec)
    try:
        port = url.port
    except ValueError:
        port = None
    if url.scheme not in ("tcp", "http", "https") or not url.hostname or port is None:
        raise ConfigError(
            f"{where}: healthcheck = {spec}: expected tcp://HOST:PORT, "
            "http(s)://HOST:PORT/PATH or cmd:COMMAND"
        )
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    kind = cast(Literal["tcp", "http", "https"], url.scheme)
    return Healthcheck(kind, host=url.hostname, port=port, path=path, **knobs)  # type: ignore[arg-type]


def parse_dependencies(where: str, value: str) -> tuple[Dependency, ...]:
    deps = []
    for token in shlex.split(value.replace(",", " ")):
        name, _, condition = token.partition(":")
        condition = condition or "started"
        if not _NAME_RE.match(name) or condition not in CONDITIONS:
            raise ConfigError(
                f"{where}: depends_on = {value}: {token!r} is not NAME or "
                f"NAME:CONDITION with CONDITION one of {', '.join(CONDITIONS)}"
            )
        deps.append(Dependency(name, condition))
    return tuple(deps)


#: The options that make a rule; with none of them, a program's rules are the defaults.
_RULE_OPTIONS = frozenset(
    {"depends_on", "healthcheck", "healthcheck_restart", "oneshot", "essential"}
)


def parse_rules(merged: config.Merged) -> dict[str, Rules]:
    """Return the orchestration rules per program (group) name; validate them together."""
    rules: dict[str, Rules] = {}
    for section, values in merged.sections.items():
        # Most programs have no rule: skip them before any parsing (shlex is slow).
        if not section.startswith(config.PROCESS_PREFIXES) or _RULE_OPTIONS.isdisjoint(values):
            continue
        where = f"{merged.where(section)}: [{section}]"
        parsed = Rules(
            depends_on=parse_dependencies(where, values.get("depends_on", "")),
            healthcheck=parse_healthcheck(where, values),
            healthcheck_restart=config.is_true(values.get("healthcheck_restart")),
            oneshot=config.is_true(values.get("oneshot")),
            essential=config.is_true(values.get("essential")),
        )
        if parsed != Rules():
            rules[section.split(":", 1)[1]] = parsed
    _validate(merged, rules)
    return rules


def _validate(merged: config.Merged, rules: dict[str, Rules]) -> None:
    names = set(config.process_names(merged.sections))
    for name, rule in rules.items():
        where = f"{merged.where(_section_of(merged, name))}: [program:{name}]"
        for dep in rule.depends_on:
            target = rules.get(dep.name, Rules())
            if dep.name not in names:
                raise UnknownReference(f"{where}: depends_on names no program {dep.name!r}")
            if dep.name == name:
                raise ConfigError(f"{where}: depends_on names the program itself")
            if dep.condition == "completed" and not target.oneshot:
                raise ConfigError(
                    f"{where}: depends_on {dep}: only a oneshot=true program can complete"
                )
            if dep.condition == "healthy" and target.healthcheck is None:
                raise ConfigError(f"{where}: depends_on {dep}: {dep.name} has no healthcheck")
    cycle = find_cycle({name: [d.name for d in rule.depends_on] for name, rule in rules.items()})
    if cycle:
        section = _section_of(merged, cycle[0])
        raise ConfigError(
            f"{merged.where(section)}: [{section}]: depends_on cycle: {' -> '.join(cycle)}"
        )


def _section_of(merged: config.Merged, name: str) -> str:
    for prefix in config.PROCESS_PREFIXES:
        if prefix + name in merged.sections:
            return prefix + name
    return "program:" + name


def find_cycle(graph: dict[str, list[str]]) -> list[str]:
    """Return one dependency cycle as a path (first node repeated at the end), or []."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []
