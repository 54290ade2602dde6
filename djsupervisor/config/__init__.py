"""Parse, merge and serialise supervisord configurations: text in, text out, no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import ConfigError, UnknownName

Sections = dict[str, dict[str, str]]

DEFAULTS = "program:__defaults__"
OVERRIDES = "program:__overrides__"
PSEUDO_SECTIONS = (DEFAULTS, OVERRIDES)

#: Section names supervisord (and supervisorctl) understand, exactly or as a prefix.
KNOWN_SECTIONS = ("supervisord", "supervisorctl", "unix_http_server", "inet_http_server", "include")
KNOWN_PREFIXES = (
    "program:",
    "group:",
    "eventlistener:",
    "fcgi-program:",
    "rpcinterface:",
    "ctlplugin:",
)
PROCESS_PREFIXES = ("program:", "eventlistener:", "fcgi-program:")
#: Global sections come first in the output, in this order; the rest keep merge order.
HEAD_ORDER = ("supervisord", "unix_http_server", "inet_http_server", "supervisorctl")

TRUE_VALUES = frozenset({"true", "yes", "on", "1"})
FALSE_VALUES = frozenset({"false", "no", "off", "0"})

_SECTION_RE = re.compile(r"\[(?P<name>[^\]]+)\]\s*(?:[;#].*)?$")
_OPTION_RE = re.compile(r"(?P<key>[^=:\s][^=:]*?)\s*[=:]\s*(?P<value>.*)$")
# supervisord's parser starts an inline comment at ";" or "#" preceded by whitespace.
_INLINE_COMMENT_RE = re.compile(r"\s[;#]")


@dataclass(frozen=True)
class Options:
    """The command-line options that shape the merged configuration."""

    launch: tuple[str, ...] = ()
    nolaunch: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    autoreload: tuple[str, ...] = ()
    noreload: bool = False
    pidfile: str | None = None
    logfile: str | None = None
    #: dotenv files whose variables every program gets (after ``SUPERVISOR_ENV_FILES``).
    env_files: tuple[str, ...] = ()


@dataclass
class Parsed:
    """One source's sections, with where each section was defined."""

    origin: str
    sections: Sections = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)


@dataclass
class Merged:
    """The merged sections and, per section, the ``file:line`` that last defined it."""

    sections: Sections = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)

    def where(self, section: str) -> str:
        return self.origins.get(section, "<djsupervisor>")


def is_true(value: str | None) -> bool:
    """Read a boolean the way supervisord does; anything unknown counts as false."""
    return value is not None and value.strip().lower() in TRUE_VALUES


def _strip_comment(line: str, start: int, where: str, template: str | None) -> str:
    """Cut an inline comment from ``line[start:]`` as supervisord would, or refuse.

    A comment the author wrote is fine. A ``" ;"`` or ``" #"`` that came out of a
    template variable would silently truncate the value in supervisord: report it.
    """
    match = _INLINE_COMMENT_RE.search(line, start)
    if match is None:
        return line[start:].strip()
    comment = line[match.start() + 1 :].strip()
    if template is not None and comment not in template:
        raise ConfigError(
            f"{where}: rendered value contains {line[match.start() : match.end()]!r}, "
            "which supervisord would treat as the start of a comment and cut: "
            f"{line[start:].strip()!r}"
        )
    return line[start : match.start()].strip()


def parse(text: str, origin: str, template: str | None = None) -> Parsed:
    """Parse supervisord INI ``text`` (rendered from ``template``) into sections.

    Lines are read as supervisord's own parser (Python's configparser) reads them:
    option names lower-cased; a line indented deeper than its option continues the
    value, also after blank lines, which stay in the value. Sections repeated within
    one text are merged.
    """
    parsed = Parsed(origin)
    section: dict[str, str] | None = None
    name = ""
    key: str | None = None
    indent = 0
    blanks = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped[:1] in (";", "#"):
            continue
        if not stripped:
            blanks += 1
            continue
        level = len(raw) - len(raw.lstrip())
        if section is not None and key is not None and level > indent:
            where = f"{origin}:{lineno}: [{name}] {key}"
            extra = _strip_comment(raw.rstrip(), level, where, template)
            section[key] = section[key] + "\n" * (blanks + 1) + extra
            blanks = 0
            continue
        blanks = 0
        indent = level
        header = _SECTION_RE.match(stripped)
        if header:
            name = header.group("name").strip()
            section = parsed.sections.setdefault(name, {})
            parsed.lines.setdefault(name, lineno)
            key = None
            continue
        option = _OPTION_RE.match(stripped)
        if option is None:
            raise ConfigError(f"{origin}:{lineno}: cannot parse line {stripped!r}")
        if section is None:
            raise ConfigError(
                f"{origin}:{lineno}: option {stripped!r} appears before any [section]"
            )
        key = option.group("key").strip().lower()
        where = f"{origin}:{lineno}: [{name}] {key}"
        section[key] = _strip_comment(stripped, option.start("value"), where, template)
    return parsed


def check_section_names(parsed: Parsed) -> None:
    """Refuse section types supervisord does not know (a typo would be silently ignored)."""
    for name in parsed.sections:
        if name in KNOWN_SECTIONS or (name.startswith(KNOWN_PREFIXES) and ":" in name[:-1]):
            continue
        raise ConfigError(
            f"{parsed.origin}:{parsed.lines[name]}: unknown section type [{name}]; "
            f"expected one of {', '.join(KNOWN_SECTIONS)} or {', '.join(KNOWN_PREFIXES)}<name>"
        )


def merge(sources: Iterable[Parsed]) -> Merged:
    """Merge sources, lowest priority first: later sources win option by option."""
    merged = Merged()
    for source in sources:
        check_section_names(source)
        for name, options in source.sections.items():
            merged.sections.setdefault(name, {}).update(options)
            merged.origins[name] = f"{source.origin}:{source.lines[name]}"
    return merged


def process_names(sections: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Return the names of the process sections, pseudo-sections excluded."""
    return [
        name.split(":", 1)[1]
        for name in sections
        if name.startswith(PROCESS_PREFIXES) and name not in PSEUDO_SECTIONS
    ]


def _find_process(sections: Sections, name: str, option: str) -> str:
    for prefix in PROCESS_PREFIXES:
        if prefix + name in sections and prefix + name not in PSEUDO_SECTIONS:
            return prefix + name
    known = ", ".join(sorted(process_names(sections))) or "none"
    raise UnknownName(f"{option} {name}: no program named {name!r} (programs: {known})")


def apply_options(merged: Merged, options: Options) -> None:
    """Apply pseudo-sections, then the command line, then drop excluded sections."""
    sections = merged.sections
    defaults = sections.pop(DEFAULTS, {})
    overrides = sections.pop(OVERRIDES, {})
    for name in sections:
        if name.startswith("program:"):
            sections[name].update(overrides)
            for key, value in defaults.items():
                sections[name].setdefault(key, value)

    for flag, names, key, value in (
        ("--launch", options.launch, "autostart", "true"),
        ("--nolaunch", options.nolaunch, "autostart", "false"),
        ("--include", options.include, "exclude", "false"),
        ("--exclude", options.exclude, "exclude", "true"),
    ):
        for name in names:
            sections[_find_process(sections, name, flag)][key] = value
    for name in options.autoreload:
        _find_process(sections, name, "--autoreload")

    excluded = {name for name, opts in sections.items() if is_true(opts.pop("exclude", None))}
    for name in excluded:
        del sections[name]
    _prune_groups(
        sections, {name.split(":", 1)[1] for name in excluded if name.startswith(PROCESS_PREFIXES)}
    )

    supervisord = sections.setdefault("supervisord", {})
    if options.pidfile:
        supervisord["pidfile"] = options.pidfile
    if options.logfile:
        supervisord["logfile"] = options.logfile


def _prune_groups(sections: Sections, excluded: set[str]) -> None:
    """Drop excluded programs from ``[group:x]`` lists, and groups left empty."""
    for name in [n for n in sections if n.startswith("group:")]:
        programs = [p.strip() for p in sections[name].get("programs", "").split(",") if p.strip()]
        kept = [p for p in programs if p not in excluded]
        if not kept and programs:
            del sections[name]
        elif kept != programs:
            sections[name]["programs"] = ",".join(kept)


def add_control_channel(
    sections: Sections, *, socket_path: str, username: str, password: str, password_hash: str
) -> None:
    """Fill in the control channel wherever the user configured none.

    The server holds only a hash of the password; ``[supervisorctl]`` gets the
    plaintext so that ``getconfig`` output works with the stock supervisorctl.
    """
    unix = sections.get("unix_http_server")
    inet = sections.get("inet_http_server")
    if unix is None and inet is None:
        unix = sections["unix_http_server"] = {
            "file": socket_path,
            "chmod": "0700",
            "username": username,
            "password": password_hash,
        }
        server: dict[str, str] = {"username": username, "password": password}
    else:
        server = dict(unix if unix is not None else inet or {})
        if server.get("password", "").startswith("{SHA}"):
            server.pop("password")
    ctl = sections.setdefault("supervisorctl", {})
    if "serverurl" not in ctl:
        if unix is not None:
            ctl["serverurl"] = "unix://" + unix.get("file", socket_path)
        else:
            host, _, port = (inet or {}).get("port", "").rpartition(":")
            ctl["serverurl"] = f"http://{host if host not in ('', '*') else 'localhost'}:{port}"
    for key in ("username", "password"):
        if key not in ctl and key in server:
            ctl[key] = server[key]
    sections.setdefault(
        "rpcinterface:supervisor",
        {"supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"},
    )


def serialize(sections: Mapping[str, Mapping[str, str]]) -> str:
    """Write sections back as supervisord INI text, global sections first."""
    head = [name for name in HEAD_ORDER if name in sections]
    order = head + [name for name in sections if name not in head]
    chunks = []
    for name in order:
        lines = [f"[{name}]"]
        for key, value in sections[name].items():
            first, *rest = f"{key} = {value}".split("\n")
            lines.append(first.rstrip())
            lines.extend(f"    {line}".rstrip() for line in rest)
        chunks.append("\n".join(lines))
    return "\n\n".join(chunks) + "\n"
