"""Watch the project's code; restart (or signal) its programs over the control channel.

Runs as its own supervisord program (``manage.py supervisor autoreload``), so supervisord
stays single-threaded and never forks from a callback. Changes come from Django's
reloader machinery: a pruned ``StatReloader`` by default, watchman when Django finds it,
watchfiles when installed (the ``watch`` extra). A burst of changes gives one action.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib
import importlib.util
import os
import signal
import sys
import sysconfig
import time
import xmlrpc.client
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.utils import autoreload as django_autoreload

from .. import config
from ..client.channel import Channel, client_options
from ..conf import conf
from ..config.project import Project, env_file_paths, find_sources, merged_sections
from ..errors import ConfigError
from ..protocol import GROUP_NAME_ENV, PROCESS_NAME_ENV

#: The watcher's own program: never a target, whatever its options say.
PROGRAM = "autoreload"
#: Polling interval when idle (Django's). Changes closer together than SETTLE (a save
#: and a format-on-save, a checkout) are one burst, cut at SETTLE_MAX.
POLL_INTERVAL = 1.0
SETTLE = 0.25
SETTLE_MAX = 5.0
#: How often restart() looks whether the stopped programs are down yet.
STATE_POLL = 0.02
#: Never walked: no sources there, and often huge.
PRUNED_DIRS = frozenset({"__pycache__", "node_modules", "site-packages"})
MANY_FILES = 5000
ACTIVE_STATES = frozenset({"RUNNING", "STARTING", "BACKOFF"})
LEFT_ALONE_STATES = frozenset({"STOPPED", "STOPPING"})  # never started, or stopped by you
UNSTOPPED_STATES = ACTIVE_STATES | {"STOPPING"}


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


@dataclass
class Selector:
    """Decide what a changed path means: a config source, code, or nothing."""

    roots: Sequence[Path]
    sources: Collection[Path]
    patterns: Sequence[str] = ("*.py",)
    ignore_patterns: Sequence[str] = (".*", "#*", "*~")

    def _ignored(self, name: str) -> bool:
        return any(fnmatch.fnmatch(name, pattern) for pattern in self.ignore_patterns)

    def wanted_name(self, name: str) -> bool:
        return not self._ignored(name) and any(fnmatch.fnmatch(name, p) for p in self.patterns)

    def pruned(self, directory: str, name: str) -> bool:
        """Skip this directory: ignored, never holds sources, or a virtualenv."""
        return (
            name in PRUNED_DIRS
            or self._ignored(name)
            or os.path.exists(os.path.join(directory, name, "pyvenv.cfg"))
        )

    def kind(self, path: Path, modules: Collection[Path] = frozenset()) -> str | None:
        """Return "config", "code" or None for a changed ``path``."""
        if path in self.sources:
            return "config"
        if not self.wanted_name(path.name):
            return None
        if path in modules:
            return "code"
        for root in self.roots:
            if path.is_relative_to(root):
                parent = str(root)
                for part in path.relative_to(root).parts[:-1]:
                    if self.pruned(parent, part):
                        return None
                    parent = os.path.join(parent, part)
                return "code"
        return None

    def directories(self, top: str | None = None) -> Iterator[tuple[str, list[str]]]:
        """Yield each directory under the roots (or ``top``) not pruned, with its files."""
        for root in [top] if top else map(str, self.roots):
            for directory, dirs, files in os.walk(root):
                dirs[:] = [name for name in dirs if not self.pruned(directory, name)]
                yield directory, files

    def walk(self, top: str | None = None) -> Iterator[Path]:
        """Yield the matching files under the roots (or ``top``), pruning as ``pruned`` says."""
        for directory, files in self.directories(top):
            for name in files:
                if self.wanted_name(name):
                    yield Path(directory, name)


def _stdlib_dirs() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    return tuple({Path(paths[key]).resolve() for key in ("stdlib", "platstdlib")})


_STDLIB = _stdlib_dirs()


def _in_stdlib(path: Path) -> bool:
    """Tell whether ``path`` is in the standard library, which never changes under us."""
    return any(path.is_relative_to(d) for d in _STDLIB) and not any(
        part in ("site-packages", "dist-packages") for part in path.parts
    )


class ProjectStatReloader(django_autoreload.StatReloader):
    """Django's polling reloader, walking the project with pruning instead of globbing.

    ``Path.glob("**/*.py")`` would descend into a virtualenv or node_modules inside
    the project on every poll. Unlike Django's, new and deleted files count as changes
    (a checkout brings both), and so does any other mtime (a file restored from backup);
    the standard library, which never changes under a running project, is not polled.
    """

    def __init__(self, selector: Selector, write: Callable[[str], None] = print) -> None:
        super().__init__()
        self.selector = selector
        self.write = write
        self.warned = False
        self._modules: Collection[Path] | None = None
        self._kept: list[Path] = []

    def watched_files(self, include_globs: bool = True) -> Iterator[Path]:
        modules = django_autoreload.iter_all_python_module_files()
        if modules is not self._modules:  # a cached set: new only when imports happened
            self._modules = modules
            self._kept = [path for path in modules if not _in_stdlib(path)]
        yield from self._kept
        yield from self.extra_files
        if include_globs:
            count = 0
            for count, path in enumerate(self.selector.walk(), 1):  # noqa: B007
                yield path
            if count > MANY_FILES and not self.warned:
                self.warned = True
                self.write(
                    f"polling {count} project files every second; install djsupervisor[watch] "
                    "or narrow SUPERVISOR_AUTORELOAD_IGNORE_PATTERNS"
                )

    def tick(self) -> Iterator[None]:
        mtimes: dict[Path, float] | None = None
        while True:
            current = dict(self.snapshot_files())
            if mtimes is not None:
                for path in current.keys() | mtimes.keys():
                    if current.get(path) != mtimes.get(path):
                        self.notify_file_changed(path)
            mtimes = current
            time.sleep(self.SLEEP_TIME)
            yield


class WatchfilesReloader(django_autoreload.BaseReloader):
    """A reloader on watchfiles (inotify, FSEvents, ...), which debounces bursts itself.

    Watches each wanted directory on its own, not trees: inotify reports every *read*
    too, so a watched virtualenv or site-packages would wake us at every import by any
    process. Installed packages (and the standard library) are therefore not watched.
    """

    def __init__(self, selector: Selector) -> None:
        super().__init__()
        self.selector = selector
        self._added: Any = None

    def _directories(self) -> list[str]:
        installed = {Path(p).resolve() for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}}
        dirs = {directory for directory, _ in self.selector.directories()}
        dirs.update(str(path.parent) for path in self.selector.sources)
        for path in django_autoreload.iter_all_python_module_files():
            if not any(path.is_relative_to(prefix) for prefix in installed):
                dirs.add(str(path.parent))
        return sorted(d for d in dirs if os.path.isdir(d))

    def _relevant(self, change: Any, path: str) -> bool:
        if self.selector.kind(Path(path), django_autoreload.iter_all_python_module_files()):
            return True
        # A new directory in the project: watch it too.
        return (
            change == self._added
            and os.path.isdir(path)
            and self.selector.kind(Path(path, "x.py")) == "code"
        )

    def _snapshot(self) -> dict[str, float]:
        """mtimes of every watched file: what a re-watch compares, before and after."""
        stamps = {}
        for path in [*self.selector.walk(), *self.selector.sources]:
            with contextlib.suppress(OSError):
                stamps[str(path)] = path.stat().st_mtime
        return stamps

    def tick(self) -> Iterator[None]:
        # Imported by name: an optional dependency, without type stubs everywhere.
        watchfiles = importlib.import_module("watchfiles")
        self._added = watchfiles.Change.added
        before: dict[str, float] | None = None
        while not self.should_stop:
            for changes in watchfiles.watch(
                *self._directories(),
                watch_filter=self._relevant,
                debounce=int(SETTLE_MAX * 1000),
                step=int(SETTLE * 1000),
                stop_event=self._stop_condition,  # type: ignore[attr-defined]
                rust_timeout=int(POLL_INTERVAL * 1000),
                yield_on_timeout=True,
                raise_interrupt=False,
                recursive=False,
            ):
                paths = {path for _change, path in changes}
                if before is not None:
                    # Watching anew: what changed while nothing watched counts too.
                    after = self._snapshot()
                    paths.update(p for p in before.keys() | after if before.get(p) != after.get(p))
                    before = None
                new_dirs = {p for c, p in changes if c == self._added and os.path.isdir(p)}
                for path in sorted(paths - new_dirs):
                    self.notify_file_changed(Path(path))
                for directory in new_dirs:
                    # Files written there before it was watched count as changed.
                    for file in self.selector.walk(directory):
                        self.notify_file_changed(file)
                yield
                if new_dirs:
                    before = self._snapshot()  # the old watcher still runs: no gap
                    break

    @classmethod
    def check_availability(cls) -> bool:
        return importlib.util.find_spec("watchfiles") is not None


def make_reloader(
    selector: Selector, write: Callable[[str], None] = print
) -> django_autoreload.BaseReloader:
    """watchfiles if installed, else what Django picks: watchman, or our polling one."""
    if WatchfilesReloader.check_availability():
        return WatchfilesReloader(selector)
    reloader = django_autoreload.get_reloader()
    if isinstance(reloader, django_autoreload.StatReloader):
        return ProjectStatReloader(selector, write)
    for root in selector.roots:
        for pattern in selector.patterns:
            reloader.watch_dir(root, f"**/{pattern}")
    return reloader


def _display(name: str) -> str:
    """``web`` for ``web:web`` (a program in its own group), else the full name."""
    group, _, process = name.partition(":")
    return process if process == group else name


def _faults(results: Iterable[Any], tolerated: Collection[str] = ()) -> list[str]:
    return [
        r["faultString"]
        for r in results
        if isinstance(r, dict)
        and "faultString" in r
        and not any(r["faultString"].startswith(code) for code in tolerated)
    ]


@dataclass
class Watcher:
    """Turn change notifications into one ``update`` and/or one restart per burst."""

    load: Callable[[], config.Merged]
    channel: Channel
    reloader: django_autoreload.BaseReloader
    selector: Selector
    only: Sequence[str] = ()
    skip: Collection[str] = ()
    write: Callable[[str], None] = print
    sleep: Callable[[float], None] = time.sleep
    sections: config.Sections = field(default_factory=dict)
    changed: dict[Path, str] = field(default_factory=dict)
    notices: int = 0
    latest: float = 0.0  # the newest change's mtime

    def on_file_changed(self, sender: Any, file_path: Path, **kwargs: Any) -> bool:
        """``file_changed`` receiver: note what changed, act later (once per burst)."""
        modules = django_autoreload.iter_all_python_module_files()
        kind = self.selector.kind(Path(file_path), modules)
        if kind is not None:
            self.changed[Path(file_path)] = kind
            self.notices += 1
            now = time.time()
            try:
                stamp = min(os.stat(file_path).st_mtime, now)  # a clock ahead: now
            except OSError:
                stamp = now  # deleted
            self.latest = max(self.latest, stamp)
        # True: handled, so Django's reloader never exits the process (StatReloader would).
        return True

    def run(self) -> None:
        """Watch until stopped; every error is reported and watching goes on."""
        django_autoreload.file_changed.connect(self.on_file_changed, weak=False)
        self.reload_sections()
        polling = isinstance(self.reloader, django_autoreload.StatReloader)
        if polling:
            self.reloader.SLEEP_TIME = 0  # type: ignore[attr-defined]  # paced here
        ticker = self.reloader.tick()
        try:
            next(ticker)  # the first pass only takes stock
            self.changed.clear()
            self.write(f"watching for changes with {type(self.reloader).__name__}")
            while not self.reloader.should_stop:
                if polling:
                    self.sleep(POLL_INTERVAL)
                next(ticker)
                if not self.changed:
                    continue
                if polling:
                    self.settle(ticker)
                changed, self.changed = self.changed, {}
                try:
                    self.apply(changed)
                except Exception as error:  # a watcher that dies reloads nothing
                    self.write(f"autoreload failed: {type(error).__name__}: {error}")
        except StopIteration:
            pass
        finally:
            django_autoreload.file_changed.disconnect(self.on_file_changed)

    def settle(self, ticker: Iterator[None]) -> None:
        """Poll again until SETTLE has passed since the newest change: a burst is one.

        Counted from the files' mtimes, not from when a pass saw them: a change made
        long enough before the pass that found it needs no second look.
        """
        deadline = time.monotonic() + SETTLE_MAX
        while time.monotonic() < deadline:
            quiet = time.time() - self.latest
            if quiet >= SETTLE:
                return
            seen = self.notices
            self.sleep(min(SETTLE, SETTLE - quiet))
            next(ticker)
            if self.notices == seen:
                return

    def reload_sections(self) -> None:
        try:
            self.sections = self.load().sections
        except ConfigError as error:
            self.write(f"config error, keeping the previous config: {error}")
            return
        for warning in select_targets(self.sections, self.only, self.skip)[1]:
            self.write(warning)

    def apply(self, changed: dict[Path, str]) -> None:
        files = [str(self._short(path)) for path in sorted(changed)]
        more = f" and {len(files) - 3} more" if len(files) > 3 else ""
        self.write(f"changed: {', '.join(files[:3])}{more}")
        fresh: set[str] = set()
        if "config" in changed.values():
            self.reload_sections()
            fresh = self.update()
        if "code" in changed.values():
            targets, _ = select_targets(self.sections, self.only, self.skip)
            self.restart([t for t in targets if t.group not in fresh])

    def _short(self, path: Path) -> Path:
        for root in self.selector.roots:
            if path.is_relative_to(root):
                return path.relative_to(root)
        return path

    def update(self) -> set[str]:
        """Apply a changed config as ``supervisorctl update`` does; return the groups started."""
        try:
            added, changed, removed = self.channel("reloadConfig")[0]
        except xmlrpc.client.Fault as fault:
            self.write(f"config not applied: {fault.faultString}")
            return set()
        # Stopping our own group would kill this call half-way: leave it to the user.
        own = {os.environ.get(GROUP_NAME_ENV, PROGRAM), PROGRAM}
        for group in sorted((set(changed) | set(removed)) & own):
            self.write(f"{group}: config changed; apply it with 'manage.py supervisor update'")
        stale = [g for g in [*removed, *changed] if g not in own]
        fresh = [g for g in [*changed, *added] if g not in own]
        faults = self.stop(
            [
                f"{info['group']}:{info['name']}"
                for info in self.channel("getAllProcessInfo")
                if info["group"] in stale and info["statename"] in UNSTOPPED_STATES
            ]
        )
        faults += _faults(self.channel.multicall(("removeProcessGroup", [g]) for g in stale))
        faults += _faults(self.channel.multicall(("addProcessGroup", [g]) for g in fresh))
        for what, groups in (("added", added), ("changed", changed), ("removed", removed)):
            if groups:
                self.write(f"{what}: {', '.join(groups)}")
        for message in faults:
            self.write(f"update: {message}")
        return set(fresh)

    def restart(self, targets: Sequence[Target]) -> None:
        """Restart (or signal) the targets' processes, each on its own; leave stopped ones be."""
        if not targets:
            return
        restart: list[str] = []
        running: list[str] = []
        signals: list[tuple[str, str]] = []
        for info in self.channel("getAllProcessInfo"):
            target = next((t for t in targets if t.matches(info["group"], info["name"])), None)
            state = info["statename"]
            if target is None or state in LEFT_ALONE_STATES:
                continue
            name = f"{info['group']}:{info['name']}"
            if target.signal and state == "RUNNING":
                signals.append((name, target.signal))
                continue
            restart.append(name)
            if state in ACTIVE_STATES:
                running.append(name)
        faults = self.restart_each(restart, running)
        faults += _faults(
            self.channel.multicall(("signalProcess", [name, sig]) for name, sig in signals),
            ("NOT_RUNNING", "BAD_NAME"),
        )
        if restart:
            self.write(f"restarted: {', '.join(map(_display, restart))}")
        if signals:
            self.write(f"signalled: {', '.join(f'{_display(n)} (SIG{s})' for n, s in signals)}")
        for message in faults:
            self.write(f"restart: {message}")

    def stop(self, names: Sequence[str]) -> list[str]:
        """Stop processes all at once, and wait for them; return the faults.

        Waiting calls (``stopProcess(name, True)``, ``stopProcessGroup``) would stop them
        one at a time, and answer late: supervisord checks on them once a second.
        """
        faults = _faults(
            self.channel.multicall(("stopProcess", [name, False]) for name in names),
            ("NOT_RUNNING", "BAD_NAME"),
        )
        self.wait_stopped(names)
        return faults

    def restart_each(self, names: Sequence[str], running: Sequence[str]) -> list[str]:
        """Stop ``running`` at once, and start each of ``names`` as soon as it is down.

        A program that stops at once is back while a slow one (Celery's warm shutdown)
        is still stopping: the web server is not down for as long as the slowest.
        """
        faults = _faults(
            self.channel.multicall(("stopProcess", [name, False]) for name in running),
            ("NOT_RUNNING", "BAD_NAME"),
        )
        deadline = self._stop_deadline()
        pending = list(names)
        while pending:
            states = {
                f"{info['group']}:{info['name']}": info["statename"]
                for info in self.channel("getAllProcessInfo")
            }
            late = time.monotonic() >= deadline  # supervisord killed it: start it anyway
            down = [n for n in pending if late or states.get(n) not in UNSTOPPED_STATES]
            faults += _faults(
                self.channel.multicall(("startProcess", [name, False]) for name in down),
                ("ALREADY_STARTED", "BAD_NAME"),
            )
            pending = [n for n in pending if n not in down]
            if pending:
                self.sleep(STATE_POLL)
        return faults

    def _stop_deadline(self) -> float:
        """When every stop must be over: supervisord kills laggards after stopwaitsecs."""
        waits = [v.get("stopwaitsecs", "10") for v in self.sections.values()]
        return time.monotonic() + 10 + max((int(w) for w in waits if w.isdigit()), default=10)

    def wait_stopped(self, names: Collection[str]) -> None:
        """Wait until none of ``names`` is running or stopping (supervisord kills laggards)."""
        deadline = self._stop_deadline()
        while names and time.monotonic() < deadline:
            if not any(
                f"{info['group']}:{info['name']}" in names and info["statename"] in UNSTOPPED_STATES
                for info in self.channel("getAllProcessInfo")
            ):
                return
            self.sleep(STATE_POLL)


def _load_urlconf() -> None:
    """Import the URLconf as runserver does, so the modules it pulls in are watched."""
    try:
        from django.urls import get_resolver

        get_resolver().urlconf_module  # noqa: B018
    except Exception:  # a broken view is the developer's next edit, not our failure
        pass


def watch(project: Project, options: config.Options, *, stdout: Any) -> None:
    """Watch ``project`` and act on its running supervisord until interrupted."""

    def load() -> config.Merged:
        return merged_sections(project, options)

    def write(text: str) -> None:
        # Flushed at once: supervisord reads a pipe, which Python would block-buffer.
        stdout.write(text + "\n")
        stdout.flush()

    load()  # a bad --autoreload name or config fails here, before watching
    client = client_options(load, str(project.config_file))
    sources = {s.path.resolve() for s in find_sources(project)} | {project.config_file}
    sources |= {path.resolve() for path in env_file_paths(project, options)}
    selector = Selector(
        roots=[project.directory],
        sources=sources,
        patterns=conf.SUPERVISOR_AUTORELOAD_PATTERNS,
        ignore_patterns=conf.SUPERVISOR_AUTORELOAD_IGNORE_PATTERNS,
    )
    _load_urlconf()
    reloader = make_reloader(selector, write)
    reloader.extra_files.update(sources)
    own = os.environ.get(PROCESS_NAME_ENV)
    watcher = Watcher(
        load=load,
        channel=Channel(*client.channel),
        reloader=reloader,
        selector=selector,
        only=options.autoreload,
        skip={own} if own else set(),
        write=write,
    )
    with contextlib.suppress(KeyboardInterrupt):
        watcher.run()
