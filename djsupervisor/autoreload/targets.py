"""What a code change acts on: the programs (or processes) to restart or signal."""

from __future__ import annotations

import os
import signal
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from .. import config

#: The watcher's own program: never a target, whatever its options say.
PROGRAM = "autoreload"


@dataclass(frozen=True)
class Target:
    """Processes to act on: a whole group (``process`` None) or one process in it."""

    group: str
    process: str | None = None
    signal: str | None = None

    def matches(self, group: str, process: str) -> bool:
        return group == self.group and self.process in (None, process)


def signal_name(value: str) -> str | None:
    """Return ``HUP`` for "HUP", "SIGHUP", "1" or "hup"; None if it names no signal."""
    text = value.strip().upper()
    try:
        return signal.Signals(int(text)).name[3:]
    except ValueError:
        pass
    name = text if text.startswith("SIG") else "SIG" + text
    return name[3:] if name in signal.Signals.__members__ else None


def _process_names(program: str, values: dict[str, str], group: str) -> list[str] | None:
    """Expand ``process_name`` as supervisord does; None when it cannot be done here."""
    template = values.get("process_name", "%(program_name)s")
    try:
        first = int(values.get("numprocs_start", "0"))
        count = int(values.get("numprocs", "1"))
        env = {f"ENV_{key}": value for key, value in os.environ.items()}
        return [
            template % {**env, "program_name": program, "group_name": group, "process_num": n}
            for n in range(first, first + count)
        ]
    except (KeyError, ValueError, TypeError):
        return None


def select_targets(
    sections: config.Sections, only: Sequence[str] = (), skip: Collection[str] = ()
) -> tuple[list[Target], list[str]]:
    """Choose what a code change acts on; return the targets and warnings.

    Every process section whose ``autoreload`` is not false, or exactly ``only`` when
    given; never the watcher (``PROGRAM``) nor ``skip``. ``autoreload_signal`` asks for
    that signal instead of a restart.
    """
    members: dict[str, str] = {}
    for name, values in sections.items():
        if name.startswith("group:"):
            for program in values.get("programs", "").split(","):
                members[program.strip()] = name.split(":", 1)[1]
    targets: list[Target] = []
    warnings: list[str] = []
    for section, values in sections.items():
        if not section.startswith(config.PROCESS_PREFIXES) or section in config.PSEUDO_SECTIONS:
            continue
        program = section.split(":", 1)[1]
        if program == PROGRAM or program in skip:
            continue
        flag = values.get("autoreload", "true").strip().lower()
        if flag not in config.TRUE_VALUES | config.FALSE_VALUES:
            warnings.append(f"[{section}] autoreload = {flag!r} is not a boolean; taken as true")
        if (program not in only) if only else flag in config.FALSE_VALUES:
            continue
        sig = None
        if values.get("autoreload_signal", "").strip():
            sig = signal_name(values["autoreload_signal"])
            if sig is None:
                warnings.append(
                    f"[{section}] autoreload_signal = {values['autoreload_signal']!r} names "
                    "no signal; restarting it instead"
                )
        group = members.get(program)
        if group is None:
            targets.append(Target(program, None, sig))
            continue
        names = _process_names(program, values, group)
        if names is None:
            targets.append(Target(group, None, sig))  # the whole group, to be safe
        else:
            targets.extend(Target(group, name, sig) for name in names)
    return targets, warnings
