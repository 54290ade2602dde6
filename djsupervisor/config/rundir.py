"""The runtime directory and supervisord's files: safe from other local users.

Three rules, each against a local user who can write where we look:

* The runtime directory is ours alone: created by one ``mkdir`` with mode 0700, or,
  if it exists, accepted only if ``lstat`` shows a real directory we own with mode
  0700. Nothing we did not just create is ever chmodded.
* The files in it (pid file, supervisord's log, the lock, the API's console log) are
  opened without following symlinks. supervisord's own logger opens its file by path,
  so the file is pre-opened here with ``O_NOFOLLOW | O_CREAT`` and then opened by
  supervisord: in a directory only we can write, nobody can swap it in between.
* A pid or log file elsewhere is not reached through a symlink that another user
  could have planted: a symlink in a directory another user can write is refused,
  unless the directory is sticky and the link is ours (then nobody else can replace
  it). The remaining race (a regular file swapped for a symlink between this check
  and supervisord's open, in a non-sticky directory others can write) is documented.

Everything here that only looks (``check_runtime_dir``, ``check_link``) writes nothing,
so the system checks can use it.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, StartError

if TYPE_CHECKING:
    from .. import config

PRIVATE_MODE = 0o700
_FIX = "remove it, or set SUPERVISOR_RUNTIME_DIR to a directory of yours with mode 0700"


def _owner(uid: int) -> str:
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def _refusal(path: Path, info: os.stat_result) -> str | None:
    """Why an existing runtime directory is unsafe, or ``None``."""
    kind = (
        "a symlink"
        if stat.S_ISLNK(info.st_mode)
        else "a directory"
        if stat.S_ISDIR(info.st_mode)
        else "not a directory"
    )
    mode = stat.S_IMODE(info.st_mode)
    if kind == "a directory" and info.st_uid == os.getuid() and mode == PRIVATE_MODE:
        return None
    return (
        f"runtime directory {path} is unsafe: found {kind} owned by {_owner(info.st_uid)} "
        f"with mode {mode:04o}, expected a directory owned by {_owner(os.getuid())} with "
        f"mode 0700; {_FIX}"
    )


def check_runtime_dir(path: Path) -> bool:
    """Tell whether the runtime directory exists; raise ``ConfigError`` if it is unsafe.

    Only looks: creates, chmods and writes nothing.
    """
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    except OSError as error:
        raise ConfigError(f"cannot use runtime directory {path}: {error.strerror}") from None
    reason = _refusal(path, info)
    if reason is not None:
        raise ConfigError(reason)
    return True


def ensure_runtime_dir(path: Path) -> None:
    """Create the private runtime directory, or accept only one that is safely ours."""
    if check_runtime_dir(path):
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One mkdir with the final mode: there is no moment when it is open to others.
        os.mkdir(path, PRIVATE_MODE)
    except FileExistsError:
        # Someone made it between our lstat and mkdir: judge what is there now.
        check_runtime_dir(path)
        return
    except OSError as error:
        raise ConfigError(f"cannot create runtime directory {path}: {error.strerror}") from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) != PRIVATE_MODE:
                # An unusual umask took owner bits away from the directory we just made.
                os.fchmod(fd, PRIVATE_MODE)
        finally:
            os.close(fd)
    except OSError as error:
        raise ConfigError(f"cannot create runtime directory {path}: {error.strerror}") from None


def open_private(path: Path | str, flags: int, what: str, action: str = "open") -> int:
    """Open a file in the runtime directory without following a symlink there."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as error:
        if os.path.islink(path):
            raise StartError(f"{what} {path} is a symlink; refusing to follow it") from None
        raise StartError(f"cannot {action} {what} {path}: {error.strerror}") from None


def others_can_write(directory: os.stat_result) -> bool:
    """Tell whether a user other than us (and root) can create entries in a directory."""
    if directory.st_uid not in (0, os.getuid()):
        return True
    return bool(stat.S_IMODE(directory.st_mode) & 0o022)


def check_link(option: str, path: str, private_dir: str | None = None) -> None:
    """Refuse a symlink at ``path`` that another user may have planted (``ValueError``).

    ``private_dir`` is the runtime directory, where no symlink is followed at all.
    Only looks: writes nothing.
    """
    try:
        link = os.lstat(path)
    except OSError:
        return  # nothing there yet (or unreachable): opening it will say
    if not stat.S_ISLNK(link.st_mode):
        return
    parent = os.path.dirname(os.path.abspath(path))
    if private_dir is not None and os.path.abspath(private_dir) == parent:
        raise ValueError(f"{option} {path} is a symlink in the runtime directory; remove it")
    try:
        directory = os.stat(parent)
    except OSError:
        return
    sticky_and_ours = bool(directory.st_mode & stat.S_ISVTX) and link.st_uid == os.getuid()
    if others_can_write(directory) and not sticky_and_ours:
        raise ValueError(
            f"{option} {path} is a symlink in {parent}, which another user can write; "
            "refusing to follow it (use a path in a directory only you can write)"
        )


def open_guarded(
    option: str, path: str, flags: int, private_dir: str | None = None, action: str = "open"
) -> int:
    """Open ``path`` for writing, never through a symlink another user may have planted.

    In the runtime directory and in directories other users can write, the open itself
    refuses a symlink (``O_NOFOLLOW``); elsewhere (``/dev/stdout``) the path is opened
    as it is. Raises ``StartError`` with one line naming ``option``.
    """
    try:
        check_link(option, path, private_dir)
    except ValueError as error:
        raise StartError(str(error)) from None
    parent = os.path.dirname(os.path.abspath(path))
    private = os.path.abspath(private_dir) if private_dir else None
    try:
        guarded = parent == private or others_can_write(os.stat(parent))
    except OSError:
        guarded = True
    if guarded:
        return open_private(path, flags, option, action)
    try:
        return os.open(path, flags | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise StartError(f"cannot {action} {option} {path}: {error.strerror}") from None


def preopen(option: str, path: str, private_dir: str | None = None) -> None:
    """Create ``path`` as a regular file before supervisord opens it by path.

    supervisord's logger cannot be given a descriptor, so its file is made here, never
    through a planted symlink; in a directory only we can write (or a sticky one), nobody
    else can replace it before supervisord's own open.
    """
    os.close(open_guarded(option, path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, private_dir))


def check_files(options: Any, private_dir: str | None = None) -> None:
    """Refuse planted symlinks at supervisord's pid and log files and programs' logs.

    ``options`` is supervisord's realized ``ServerOptions``. Raises ``ValueError`` (one
    line naming the option, the program and the path). Only looks: writes nothing.
    """
    check_link("pidfile", options.pidfile, private_dir)
    if options.logfile != "syslog":
        check_link("logfile", options.logfile, private_dir)
    for group in options.process_group_configs:
        for process in group.process_configs:
            for key in ("stdout_logfile", "stderr_logfile"):
                path = getattr(process, key, None)
                if isinstance(path, str):  # not None, nor supervisord's Automatic
                    check_link(f"[program:{process.name}] {key}", path, private_dir)


def standing_in(merged: config.Merged, runtime_dir: Path) -> config.Merged:
    """``merged`` with paths in the (missing) runtime directory moved to an existing one.

    supervisord's option parser requires the directories of the log, pid and socket
    files to exist; a check must not create the runtime directory to satisfy it.
    """
    prefix = str(runtime_dir)
    # The root directory: it exists, and only root can plant anything in it.
    stand_in = ""

    def moved(value: str) -> str:
        if value == prefix:
            return os.sep
        if value.startswith(prefix + os.sep):
            return stand_in + value[len(prefix) :]
        if value.startswith("unix://" + prefix + os.sep):
            return "unix://" + stand_in + value[len("unix://" + prefix) :]
        return value

    sections = {
        name: {key: moved(value) for key, value in values.items()}
        for name, values in merged.sections.items()
    }
    return dataclasses.replace(merged, sections=sections)
