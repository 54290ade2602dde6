"""systemd units: one service per program (a template when it has several processes)
and a target that starts them all."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
from collections.abc import Sequence
from typing import Any

from supervisor.datatypes import Automatic, RestartUnconditionally

from . import SENTINEL, Program, Target, _user

UNIT_CHARS_RE = re.compile(r"[^A-Za-z0-9:_.-]")
_SIMPLE_WORD_RE = re.compile(r"^[A-Za-z0-9_@%$+=:,./-]+$")


def unit_name(prefix: str, name: str) -> str:
    """A unit name fragment: characters systemd does not allow are escaped (\\xNN)."""
    text = f"{prefix}-{name}"
    return UNIT_CHARS_RE.sub(lambda m: "".join(f"\\x{b:02x}" for b in m[0].encode()), text)


def _escape(text: str) -> str:
    """Escape systemd specifiers (``%``)."""
    return text.replace("%", "%%")


def _exec_word(word: str) -> str:
    """One ExecStart= word: no specifier or variable expansion, quoted when needed."""
    word = _escape(word).replace("$", "$$")
    if _SIMPLE_WORD_RE.match(word) and word != ";":
        return word
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _executable(argv: list[str], process: Any, notes: list[str]) -> list[str]:
    """Resolve the program on PATH as supervisord does (systemd wants an absolute path)."""
    if not argv or "/" in argv[0]:
        return argv
    found = shutil.which(argv[0], path=os.pathsep.join(process.get_path()))
    if found is None:
        notes.append(f"command {argv[0]!r} is not on PATH here; systemd searches its own PATH")
        return argv
    return [found, *argv[1:]]


def _log(kind: str, value: Any, notes: list[str], maxbytes: int) -> str | None:
    if value is Automatic:
        return None  # the journal, systemd's default
    if value is None:
        return "null"
    if maxbytes:
        notes.append(f"{kind}_logfile_maxbytes: systemd does not rotate {value}; use logrotate")
    return f"append:{value}"


def service_unit(program: Program, target: Target) -> str:
    """Return the text of ``program``'s unit (a template when it has several processes)."""
    process = program.template
    notes = list(program.notes)
    template = program.numprocs > 1

    def value(text: str) -> str:
        text = _escape(text)
        return text.replace(str(SENTINEL), "%i") if template else text

    unit = [f"Description={value(f'{target.prefix}: {process.name}')}", f"PartOf={target.name}"]
    for dep in program.rules.depends_on:
        dep_unit = unit_name(target.prefix, dep.name) + ".service"
        unit += [f"After={dep_unit}", f"Requires={dep_unit}"]
        if dep.condition == "healthy":
            notes.append(f"depends_on {dep}: ordered after {dep.name} started, not healthy")
    service = ["Type=oneshot", "RemainAfterExit=yes"] if program.rules.oneshot else ["Type=simple"]
    argv = _executable(shlex.split(process.command), process, notes)
    exec_start = " ".join(_exec_word(word) for word in argv)
    service.append(
        "ExecStart=" + (exec_start.replace(str(SENTINEL), "%i") if template else exec_start)
    )
    if process.startsecs and not program.rules.oneshot:
        # Started only once it stayed up startsecs, as in supervisord: dying in that
        # time fails the start.
        service.append(f"ExecStartPost=/bin/sleep {process.startsecs}")
    if not process.directory:
        notes.append("directory: not set; the project directory is used")
    service.append(f"WorkingDirectory={value(process.directory or str(target.project_dir))}")
    run_as = _user(process, target.user)
    if run_as:
        service.append(f"User={run_as}")
    environment = {"DJANGO_SETTINGS_MODULE": target.settings_module, **(process.environment or {})}
    for key, val in environment.items():
        pair = value(f"{key}={val}").replace("\\", "\\\\").replace('"', '\\"')
        service.append(f'Environment="{pair}"')
    if process.umask is not None:
        service.append(f"UMask={process.umask:04o}")
    if program.rules.oneshot or not process.autorestart:
        service.append("Restart=no")
    elif process.autorestart is RestartUnconditionally:
        service.append("Restart=always")
    else:
        service.append("Restart=on-failure")
    codes = [c for c in process.exitcodes if c != 0]
    if codes:
        service.append("SuccessExitStatus=" + " ".join(str(c) for c in codes))
    service.append(f"KillSignal={signal.Signals(process.stopsignal).name}")
    service.append(f"TimeoutStopSec={process.stopwaitsecs}")
    stdout = _log("stdout", process.stdout_logfile, notes, process.stdout_logfile_maxbytes)
    if stdout:
        service.append(f"StandardOutput={value(stdout)}")
    if process.redirect_stderr:
        service.append("StandardError=inherit")
    else:
        stderr = _log("stderr", process.stderr_logfile, notes, process.stderr_logfile_maxbytes)
        service.append(f"StandardError={value(stderr) if stderr else 'journal'}")
    if program.rules.healthcheck is not None:
        notes.append("healthcheck: not translated")
    if program.rules.essential:
        notes.append("essential=true: not translated (see FailureAction=)")
    if process.priority != 999:
        notes.append(f"priority={process.priority}: not translated (order units with After=)")
    if process.startretries != 3:
        notes.append(f"startretries={process.startretries}: not translated (see StartLimitBurst=)")
    if not process.autostart:
        notes.append("autostart=false: not wanted by the target; start it by hand")
    lines = [target.header("systemd")]
    if notes:
        notes = [note.replace(str(SENTINEL), "%i") for note in notes]
        lines += ["# Not translated:", *(f"#   {note}" for note in notes)]
    lines += ["[Unit]", *unit, "", "[Service]", *service, ""]
    if process.autostart:
        lines += ["[Install]", f"WantedBy={target.name}", ""]
    return "\n".join(lines)


def target_unit(found: Sequence[Program], target: Target, notes: Sequence[str]) -> str:
    """Return the text of ``<prefix>.target``, which wants every autostart program."""
    wants = []
    for program in found:
        if not program.template.autostart:
            continue
        base = unit_name(target.prefix, program.name)
        if program.numprocs > 1:
            wants += [f"{base}@{i}.service" for i in program.instances]
        else:
            wants.append(f"{base}.service")
    lines = [target.header("systemd")]
    if notes:
        lines += ["# Not translated:", *(f"#   {note}" for note in notes)]
    lines += [
        "[Unit]",
        f"Description={_escape(target.prefix)}: all programs",
        *(f"Wants={name}" for name in wants),
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def systemd_units(found: Sequence[Program], notes: Sequence[str], target: Target) -> dict[str, str]:
    """Return ``{file name: text}``: one unit per program and the target."""
    units = {}
    for program in found:
        suffix = "@.service" if program.numprocs > 1 else ".service"
        units[unit_name(target.prefix, program.name) + suffix] = service_unit(program, target)
    units[target.name] = target_unit(found, target, notes)
    return units
