"""Which files count, and the reloaders (polling, watchman, watchfiles) that watch them."""

from __future__ import annotations

import contextlib
import fnmatch
import importlib
import importlib.util
import os
import sys
import sysconfig
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.utils import autoreload as django_autoreload

#: Polling interval when idle (Django's). Changes closer together than SETTLE (a save
#: and a format-on-save, a checkout) are one burst, cut at SETTLE_MAX.
POLL_INTERVAL = 1.0
SETTLE = 0.25
SETTLE_MAX = 5.0
#: Never walked: no sources there, and often huge.
PRUNED_DIRS = frozenset({"__pycache__", "node_modules", "site-packages"})
MANY_FILES = 5000


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
