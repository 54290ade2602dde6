"""supervisord's own parser over a merged config: the read-only half of the server's options.

Validation (``manage.py check``, ``getconfig``) and export need exactly what supervisord
would make of the configuration, and nothing of running it: no logger, no pid file, no
sockets, no signals. The server's options (``server.runtime``) build on this class.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any, NoReturn

from supervisor.options import ServerOptions, UnhosedConfigParser, _marker

from .. import config
from ..errors import ConfigError
from . import rules, rundir

Loader = Callable[[], config.Merged]

_SECTION_FILE_RE = re.compile(r" in section '(?P<section>[^']+)' \(file: '[^']*'\)")


def explain(message: str, merged: config.Merged) -> str:
    """Point a supervisord error at the file, section and option it came from."""
    match = _SECTION_FILE_RE.search(message)
    if match is None:
        return message
    section = match.group("section")
    values = merged.sections.get(section, {})
    culprit = next(
        (f" (option {key} = {value})" for key, value in values.items() if repr(value) in message),
        "",
    )
    head = message[: match.start()] + message[match.end() :]
    return f"{merged.where(section)}: [{section}]{culprit}: {head}"


class QuickParser(UnhosedConfigParser):  # type: ignore[misc]
    """supervisor's config parser, with ``saneget()`` skipping work a value does not need.

    For each of the ~40 options of every program, supervisor's ``saneget()`` raises and
    catches ``NoOptionError`` when the section leaves the option out (most do), and
    copies every ``ENV_*`` expansion into a fresh dict before expanding the value: with
    1,000 programs that was most of the 350 ms the parse took. A value without ``%``
    expands to itself, and a missing option is a dict lookup; everything else (a ``%``,
    an unknown section, a missing option without a default) takes supervisor's own path.
    """

    def saneget(
        self,
        section: str,
        option: str,
        default: Any = _marker,
        do_expand: bool = True,
        expansions: dict[str, Any] | None = None,
    ) -> Any:
        values = self._sections.get(section)
        if values is not None:
            key = self.optionxform(option)
            if key in values:
                value = values[key]
            elif key in self._defaults:
                value = self._defaults[key]
            else:
                value = default
            if value is not _marker and not (do_expand and isinstance(value, str) and "%" in value):
                return value
        return super().saneget(section, option, default, do_expand, expansions or {})


class ParsingOptions(ServerOptions):  # type: ignore[misc]
    """supervisord's options, read from the merged config instead of a file.

    ``configfile`` is a virtual path (the project's config file, which need not exist)
    so ``%(here)s`` and ``[include]`` resolve against the project. Every (re)load, be it
    startup, SIGHUP, ``reload``, ``reread`` or ``update``, renders all sources afresh.
    """

    def __init__(self, load: Loader, configfile: str, *, runtime_dir: str | None = None) -> None:
        super().__init__()
        self.runtime_dir = runtime_dir
        self._load = load
        self.configfile = configfile
        self.rules: dict[str, rules.Rules] = {}
        self.ctl_credentials: dict[str, str] = {}

    def read_config(self, fp: Any) -> Any:
        try:
            merged = self._load()
            self.rules = rules.parse_rules(merged)
        except ConfigError as error:
            raise ValueError(str(error)) from None
        ctl = merged.sections.get("supervisorctl", {})
        self.ctl_credentials = {
            f"SUPERVISOR_{key.upper()}": ctl[key] for key in ("username", "password") if key in ctl
        }
        stream = io.StringIO(config.serialize(merged.sections))
        stream.name = self.configfile
        try:
            return super().read_config(stream)
        except ValueError as error:
            raise ValueError(explain(str(error), merged)) from None

    def realize(self, *args: Any, **kwargs: Any) -> None:
        super().realize(*args, **kwargs)
        try:
            rundir.check_files(self, self.runtime_dir)
        except ValueError as error:
            self.usage(str(error))

    def process_config(self, do_usage: bool = True) -> None:
        super().process_config(do_usage=do_usage)
        # Set on every (re)read alike, so reread/update see no spurious changes.
        for group in self.process_group_configs:
            for process in group.process_configs:
                program = getattr(process, "program_name", group.name)
                if self.rules.get(program, rules.Rules()).oneshot:
                    # Runs once to completion: success is an expected exit code.
                    process.autorestart = False
                    process.startsecs = 0

    def process_groups_from_parser(self, parser: Any) -> Any:
        # read_config() makes its parser itself; the programs are read from here on.
        if type(parser) is UnhosedConfigParser:
            parser.__class__ = QuickParser
        return super().process_groups_from_parser(parser)

    def processes_from_section(
        self, parser: Any, section: str, group_name: str, klass: Any = None
    ) -> list[Any]:
        processes: list[Any] = super().processes_from_section(parser, section, group_name, klass)
        for process in processes:
            # Orchestration rules are per [program:x]; a [group:g] renames its group.
            process.program_name = section.split(":", 1)[1]
        return processes

    def usage(self, msg: str) -> NoReturn:
        # supervisord would print usage and sys.exit(2): make it a clean error instead.
        raise ConfigError(str(msg).splitlines()[0] if msg else "invalid configuration")

    def cleanup_fds(self) -> None:
        # supervisord closes fds 5-1024 on every restart round; in our process they
        # belong to Django (database sockets) and to our lock file.
        pass


def parse_options(load: Loader, configfile: str, *, runtime_dir: str | None = None) -> Any:
    """Parse and realize the config as supervisord would; a bad one raises ``ConfigError``."""
    options = ParsingOptions(load, configfile, runtime_dir=runtime_dir)
    # Explicit args: with None, getopt would parse manage.py's own sys.argv.
    options.realize(args=[])
    return options
