"""Watch the project's code; restart (or signal) its programs over the control channel.

Runs as its own supervisord program (``manage.py supervisor autoreload``), so supervisord
stays single-threaded and never forks from a callback. Changes come from Django's
reloader machinery: a pruned ``StatReloader`` by default, watchman when Django finds it,
watchfiles when installed (the ``watch`` extra). A burst of changes gives one action.
"""

from __future__ import annotations

import contextlib
import os
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
from .reloaders import POLL_INTERVAL, SETTLE, SETTLE_MAX, Selector, make_reloader
from .targets import PROGRAM, Target, select_targets

#: How often restart() looks whether the stopped programs are down yet.
STATE_POLL = 0.02
ACTIVE_STATES = frozenset({"RUNNING", "STARTING", "BACKOFF"})
LEFT_ALONE_STATES = frozenset({"STOPPED", "STOPPING"})  # never started, or stopped by you
UNSTOPPED_STATES = ACTIVE_STATES | {"STOPPING"}


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
