"""Export the merged configuration for production hosts: systemd units or a Procfile.

Values come from supervisord's own parse of the merged configuration (``%(...)s``
expanded, ``[supervisord] environment=`` and env files merged in), so an export runs
what ``manage.py supervisor`` would run. What has no equivalent is listed as a comment.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import shlex
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from supervisor.datatypes import Automatic, RestartUnconditionally

from .. import config
from ..config import rules
from ..errors import SupervisorError

if TYPE_CHECKING:
    from ..config.project import Project

#: Stands in for ``process_num`` in a templated unit; replaced by ``%i`` afterwards.
SENTINEL = 918273645
_PROCESS_NUM_RE = re.compile(r"%\(process_num\)([-#0 +]*\d*[diouxXs])")
_USER_RE = re.compile(r"^(?:[a-z_][a-z0-9_-]*\$?|\d+)$")
_PROCFILE_NAME_RE = re.compile(r"[^A-Za-z0-9_-]")
HEADER = "Exported by djsupervisor ('manage.py supervisor export {kind}') from {directory}"


class UsageError(SupervisorError):
    """Bad arguments to ``export``."""

    returncode = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"export: {message}")


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="manage.py supervisor export", add_help=False)
    parser.add_argument("format", choices=("systemd", "procfile", "compose", "kubernetes"))
    parser.add_argument("--output", "-o", help="directory (systemd) or file (procfile)")
    parser.add_argument("--user", help="User= of units whose program sets no user=")
    parser.add_argument("--name", help="unit name prefix and target name (default: project dir)")
    return parser


@dataclass
class Program:
    """One program section and supervisord's parsed configs of its processes.

    ``template`` is parsed with ``process_num`` = ``SENTINEL`` (systemd units);
    ``processes`` are the real ones (Procfile lines).
    """

    name: str
    template: Any
    processes: list[Any]
    rules: rules.Rules
    numprocs: int = 1
    numprocs_start: int = 0
    instance_format: str = "d"
    notes: list[str] = field(default_factory=list)

    @property
    def instances(self) -> list[str]:
        """systemd instance names: ``process_num`` formatted as the config formats it."""
        numbers = range(self.numprocs_start, self.numprocs_start + self.numprocs)
        return [f"%{self.instance_format}" % n for n in numbers]


def _process_configs(merged: config.Merged, configfile: str) -> dict[str, list[Any]]:
    """supervisord's ``ProcessConfig``s per program section name."""
    from ..config import parser

    options = parser.parse_options(lambda: merged, configfile)
    found: dict[str, list[Any]] = {}
    for group in options.process_group_configs:
        members = [group.name]
        if f"group:{group.name}" in merged.sections:
            members = [
                p.strip()
                for p in merged.sections[f"group:{group.name}"]["programs"].split(",")
                if p.strip()
            ]
        # A group holds its members' processes in member order, numprocs each.
        processes = list(group.process_configs)
        for member in members:
            section = next(
                (
                    merged.sections[p + member]
                    for p in config.PROCESS_PREFIXES
                    if p + member in merged.sections
                ),
                {},
            )
            count = int(section.get("numprocs", "1"))
            found[member], processes = processes[:count], processes[count:]
    return found


def programs(merged: config.Merged, configfile: str) -> tuple[list[Program], list[str]]:
    """Return the exportable programs and notes on the sections that are not."""
    sections = {name: dict(values) for name, values in merged.sections.items()}
    notes = []
    counts: dict[str, tuple[int, int, list[str]]] = {}
    for section, values in sections.items():
        if section.startswith(("eventlistener:", "fcgi-program:")):
            notes.append(f"[{section}]: event listeners and FastCGI programs are not exported")
        numprocs = int(values.get("numprocs", "1"))
        if section.startswith("program:") and numprocs > 1:
            formats = sorted({f.replace("s", "d") for f in _PROCESS_NUM_RE.findall(str(values))})
            start = int(values.get("numprocs_start", "0"))
            counts[section[len("program:") :]] = (numprocs, start, formats)
            # One process whose process_num stands out, to become %i.
            values["numprocs"] = "1"
            values["numprocs_start"] = str(SENTINEL)
    parsed_rules = rules.parse_rules(merged)
    templates = _process_configs(replace(merged, sections=sections), configfile)
    real = _process_configs(merged, configfile)
    found = []
    for section in merged.sections:
        if not section.startswith("program:"):
            continue
        name = section[len("program:") :]
        program = Program(
            name, templates[name][0], real[name], parsed_rules.get(name, rules.Rules())
        )
        if name in counts:
            program.numprocs, program.numprocs_start, formats = counts[name]
            if len(formats) > 1:
                program.notes.append(
                    f"process_num is formatted in several ways ({', '.join(formats)}); "
                    f"instance names use {formats[0]}"
                )
            program.instance_format = formats[0] if formats else "d"
        found.append(program)
    for name in (s for s in merged.sections if s.startswith("group:")):
        notes.append(f"[{name}]: groups have no systemd equivalent; the target groups everything")
    return found, notes


# --- shared by every format ------------------------------------------------------------


def _user(process: Any, default: str | None) -> str | None:
    if process.uid is None:
        return default
    try:
        return pwd.getpwuid(process.uid).pw_name
    except KeyError:
        return str(process.uid)


@dataclass(frozen=True)
class Target:
    """Where and how the exported programs run."""

    prefix: str
    project_dir: Path
    settings_module: str
    user: str | None = None

    @property
    def name(self) -> str:
        return f"{self.prefix}.target"

    def header(self, kind: str) -> str:
        return f"# {HEADER.format(kind=kind, directory=self.project_dir)}"


# --- Procfile --------------------------------------------------------------------------


def _procfile_notes(program: Program, process: Any) -> list[str]:
    skipped = []
    if process.uid is not None:
        skipped.append(f"user={_user(process, None)}")
    if process.autorestart is RestartUnconditionally:
        skipped.append("autorestart=true")
    stopsignal = signal.Signals(process.stopsignal).name
    if stopsignal != "SIGTERM":
        skipped.append(f"stopsignal={stopsignal[3:]}")
    if process.stopwaitsecs != 10:
        skipped.append(f"stopwaitsecs={process.stopwaitsecs}")
    if program.rules.depends_on:
        skipped.append("depends_on=" + ",".join(str(d) for d in program.rules.depends_on))
    if program.rules.oneshot:
        skipped.append("oneshot=true (a Procfile runner stops everything when one exits)")
    for kind in ("stdout", "stderr"):
        logfile = getattr(process, f"{kind}_logfile")
        if logfile is not Automatic and logfile is not None:
            skipped.append(f"{kind}_logfile={logfile}")
    return skipped


def procfile(found: Sequence[Program], notes: Sequence[str], target: Target) -> str:
    """Return a Procfile: one line per process; what it cannot say, as comments.

    Procfile runners run each line with ``sh -c``: the words are quoted for it, and the
    program's ``directory`` and ``environment`` become ``cd`` and ``env``.
    """
    lines = [target.header("procfile"), *(f"# {note}" for note in notes)]
    for program in found:
        for process in program.processes:
            words = [shlex.quote(w) for w in shlex.split(process.command)]
            env = [f"{k}={shlex.quote(v)}" for k, v in (process.environment or {}).items()]
            command = " ".join(["env", *env, *words] if env else words)
            if process.directory:
                command = f"cd {shlex.quote(process.directory)} && exec {command}"
            skipped = _procfile_notes(program, process)
            if skipped:
                lines.append(f"# {process.name}: not translated: {', '.join(skipped)}")
            line = f"{_PROCFILE_NAME_RE.sub('_', process.name)}: {command}"
            lines.append(line if process.autostart else f"# autostart=false: {line}")
    return "\n".join(lines) + "\n"


# --- the action ------------------------------------------------------------------------


def run(
    project: Project, opts: config.Options, args: Sequence[str], *, stdout: Any, stderr: Any = None
) -> None:
    """``manage.py supervisor export ...``: nothing is left in the runtime directory."""
    from ..config.rundir import check_runtime_dir, ensure_runtime_dir

    # supervisord's parser, which reads the programs, wants the log directory to exist;
    # an export made for another machine leaves none behind here.
    created = not check_runtime_dir(project.runtime_dir)
    if created:
        ensure_runtime_dir(project.runtime_dir)
    try:
        _run(project, opts, args, stdout=stdout, stderr=stderr)
    finally:
        if created:
            with contextlib.suppress(OSError):  # not empty: a supervisord started meanwhile
                os.rmdir(project.runtime_dir)


def _run(
    project: Project, opts: config.Options, args: Sequence[str], *, stdout: Any, stderr: Any
) -> None:
    from django.conf import settings

    if list(args[:1]) in (["compose"], ["kubernetes"]):
        from . import model as export_model

        export_model.run(project, opts, args, stdout=stdout, stderr=stderr)
        return

    from ..checks import validate
    from .systemd import UNIT_CHARS_RE, systemd_units

    parsed = make_parser().parse_args(list(args))
    if parsed.user is not None and not _USER_RE.match(parsed.user):
        raise UsageError(f"export: --user {parsed.user!r} is not a user name")
    prefix = parsed.name or project.directory.name
    if not prefix or UNIT_CHARS_RE.search(prefix):
        raise UsageError(
            f"export: {prefix!r} cannot name systemd units; pass --name with letters, "
            "digits, '-', '_' or '.'"
        )
    settings_module = os.environ.get("DJANGO_SETTINGS_MODULE") or settings.SETTINGS_MODULE
    # The code watcher is for development only.
    merged = validate(project, replace(opts, noreload=True))
    found, notes = programs(merged, str(project.config_file))
    target = Target(prefix, project.directory, str(settings_module), parsed.user)
    if parsed.format == "procfile":
        if parsed.user is not None:
            raise UsageError("export: --user applies to systemd units only")
        text = procfile(found, notes, target)
        if parsed.output is None:
            stdout.write(text, ending="")
            return
        _write(Path(parsed.output), text)
        stdout.write(f"wrote {parsed.output}")
        return
    if parsed.output is None:
        raise UsageError("export systemd: --output DIR is required")
    output = Path(parsed.output)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"export: cannot create {output}: {error.strerror}") from None
    units = systemd_units(found, notes, target)
    for name, text in units.items():
        _write(output / name, text)
    stdout.write(f"wrote {len(units)} units to {output}: {', '.join(units)}")


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as error:
        raise SupervisorError(f"export: cannot write {path}: {error.strerror}") from None
