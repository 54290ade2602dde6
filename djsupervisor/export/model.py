"""What the container exporters (Compose, Kubernetes) share: the programs as services.

Each exported service is one program, or one process of a ``numprocs`` program whose
processes differ by ``%(process_num)s`` (an orchestrator can only replicate identical
containers). Values come from supervisord's own parse, as for ``export systemd``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor.datatypes import Automatic, RestartUnconditionally

from ..config import rules
from ..config.rules import Condition
from ..errors import SupervisorError
from . import SENTINEL, Program, UsageError, _Parser, _user

if TYPE_CHECKING:
    from ..config.project import Project

#: Supervisord's default ``exitcodes``, ``priority`` and ``startretries``.
_DEFAULT_EXITCODES = (0,)
#: Variables whose names contain one of these go to a Kubernetes Secret.
SECRET_WORDS = ("SECRET", "PASSWORD", "TOKEN", "KEY")
_COMPOSE_NAME_RE = re.compile(r"^[a-zA-Z0-9._-]+$")
#: export.programs' note on groups speaks of systemd.
_GROUP_NOTE_RE = re.compile(r"^(\[group:[^\]]*\]): .*$")


@dataclass
class Service:
    """One container to run: a program, or one instance of a templated ``numprocs``."""

    name: str  # the program name, or ``program-<process_num>``
    program: str
    argv: list[str]
    directory: str | None
    environment: dict[str, str]
    replicas: int
    autostart: bool
    restart: str  # "always", "on-failure" or "no"
    oneshot: bool
    startretries: int
    stopsignal: str  # "TERM", "INT", ...
    stopwaitsecs: int
    uid: int | None
    user: str | None
    rules: rules.Rules
    depends_on: list[tuple[str, Condition]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def make_parser(kind: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=f"manage.py supervisor export {kind}", add_help=False)
    parser.add_argument("format", choices=("compose", "kubernetes"))
    parser.add_argument("--image", required=True, help="the image holding the project")
    parser.add_argument("--output", "-o", help="the file to write (default: stdout)")
    parser.add_argument("--name", help="project name (default: project dir)")
    if kind == "kubernetes":
        parser.add_argument("--namespace", help="metadata.namespace of every object")
        parser.add_argument(
            "--secret",
            action="append",
            default=[],
            metavar="VAR",
            help="put VAR in the Secret, whatever its name",
        )
    return parser


def _yaml() -> None:
    try:
        import yaml  # noqa: F401
    except ImportError:
        raise SupervisorError(
            "export: PyYAML is not installed; install djsupervisor[export]"
        ) from None


def dump_yaml(documents: Sequence[Any]) -> str:
    """YAML through PyYAML (an optional dependency), several documents as one stream."""
    _yaml()
    import yaml

    class Dumper(yaml.SafeDumper):
        # Shared label dicts would become &anchors, which many tools do not expect.
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return str(yaml.dump_all(documents, Dumper=Dumper, sort_keys=False, default_flow_style=False))


def _notes(program: Program, process: Any) -> list[str]:
    """What the container world has no equivalent for, one note per option."""
    notes = []
    if process.priority != 999:
        notes.append(f"priority={process.priority}: no equivalent (use depends_on)")
    for kind in ("stdout", "stderr"):
        logfile = getattr(process, f"{kind}_logfile")
        if logfile is not Automatic and logfile is not None:
            notes.append(f"{kind}_logfile={logfile}: containers log to their output")
    if process.redirect_stderr:
        notes.append("redirect_stderr=true: both streams go to the container log")
    if process.umask is not None:
        notes.append(f"umask={process.umask:03o}: no equivalent")
    if tuple(process.exitcodes) != _DEFAULT_EXITCODES and not program.rules.oneshot:
        codes = ",".join(str(c) for c in process.exitcodes)
        notes.append(f"exitcodes={codes}: every non-zero exit is a failure")
    if process.startsecs not in (0, 1):
        notes.append(f"startsecs={process.startsecs}: no equivalent")
    return notes


def services(found: Sequence[Program]) -> list[Service]:
    """The programs as containers; ``depends_on`` names other services."""
    made: list[Service] = []
    names: dict[str, list[str]] = {}
    for program in found:
        template = program.template
        templated = program.numprocs > 1 and str(SENTINEL) in repr(
            (template.command, template.directory, template.environment)
        )
        processes = program.processes if templated else [template]
        instances = program.instances if templated else [""]
        names[program.name] = []
        for process, instance in zip(processes, instances, strict=True):
            name = f"{program.name}-{instance}" if instance else program.name
            names[program.name].append(name)
            if program.rules.oneshot or not process.autorestart:
                restart = "no"
            elif process.autorestart is RestartUnconditionally:
                restart = "always"
            else:
                restart = "on-failure"
            made.append(
                Service(
                    name=name,
                    program=program.name,
                    argv=shlex.split(process.command),
                    directory=process.directory,
                    environment=dict(process.environment or {}),
                    replicas=1 if templated else program.numprocs,
                    autostart=bool(process.autostart),
                    restart=restart,
                    oneshot=program.rules.oneshot,
                    startretries=process.startretries,
                    stopsignal=signal.Signals(process.stopsignal).name[3:],
                    stopwaitsecs=process.stopwaitsecs,
                    uid=process.uid,
                    user=_user(process, None),
                    rules=program.rules,
                    warnings=[*program.notes, *_notes(program, process)],
                )
            )
    for service in made:
        for dep in service.rules.depends_on:
            service.depends_on += [(name, dep.condition) for name in names.get(dep.name, [])]
    return made


def check_compose_names(made: Sequence[Service]) -> None:
    for service in made:
        if not _COMPOSE_NAME_RE.match(service.name):
            raise UsageError(
                f"export compose: [program:{service.program}]: {service.name!r} cannot name "
                "a Compose service (letters, digits, '.', '_' and '-' only)"
            )


def run(
    project: Project, opts: Any, args: Sequence[str], *, stdout: Any, stderr: Any = None
) -> None:
    """``manage.py supervisor export compose|kubernetes --image IMAGE ...``."""
    from django.conf import settings
    from django.core.management.base import OutputWrapper

    stderr = stderr or OutputWrapper(sys.stderr)

    from .. import export
    from ..checks import validate

    kind = args[0] if args else ""
    parsed = make_parser(kind).parse_args(list(args))
    _yaml()  # before any warning: a missing extra is the only line
    name = parsed.name or project.directory.name
    merged = validate(project, replace(opts, noreload=True))  # never the code watcher
    found, notes = export.programs(merged, str(project.config_file))
    made = services(found)
    settings_module = str(os.environ.get("DJANGO_SETTINGS_MODULE") or settings.SETTINGS_MODULE)
    for service in made:
        service.environment = {"DJANGO_SETTINGS_MODULE": settings_module, **service.environment}
        # supervisord runs a program without directory= in the project directory.
        service.directory = service.directory or str(project.directory)
    if parsed.format == "compose":
        from . import compose as export_compose

        documents: list[Any] = [export_compose.compose(made, name, parsed.image)]
    else:
        from . import kubernetes as export_kubernetes

        documents = export_kubernetes.manifests(
            made, name, parsed.image, namespace=parsed.namespace, secrets=parsed.secret
        )
    lines = [
        _GROUP_NOTE_RE.sub(r"\1: groups have no equivalent; their programs are exported", n)
        for n in notes
    ]
    lines += [f"[program:{s.program}] {warning}" for s in made for warning in s.warnings]
    # The processes of one numprocs program share their notes: each is said once.
    for line in dict.fromkeys(lines):
        stderr.write(f"warning: export {parsed.format}: {line}")
    text = dump_yaml(documents)
    if parsed.output is None:
        stdout.write(text, ending="")
        return
    export._write(Path(parsed.output), text)
    stdout.write(f"wrote {parsed.output}")


def python() -> str:
    """The interpreter the exported commands use (``{{ PYTHON }}``): also the probes'."""
    return sys.executable
