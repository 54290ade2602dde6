"""argv <-> run options: the one translation between command lines and ``config.Options``.

``manage.py supervisor`` parses its command line into ``config.Options`` here;
``djsupervisor.start()`` builds the same ``Options`` from its keyword arguments (named
as the command's options) and turns them back into the command line of the process it
starts. A new option is added to ``config.Options``, ``run_options`` and ``argv``.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import config

#: Options of the foreground command that ``start()`` has no parameter for, and why.
NOT_FOR_START = {
    "action": "start() runs supervisord; control goes through the returned handle",
    "daemonize": "start() always runs supervisord in a background process",
    "noreload": "start(autoreload=False), the default, is --noreload",
    "raw": "the console is supervisord's messages only (--quiet), in console_log",
    "quiet": "the console is supervisord's messages only (--quiet), in console_log",
    "json": "an option of the status action",
    "stats": "an option of the status action",
}

#: ``config.Options`` fields given as repeatable options, and their flags.
_REPEATED = (
    ("launch", "--launch"),
    ("nolaunch", "--nolaunch"),
    ("exclude", "--exclude"),
    ("include", "--include"),
    ("autoreload", "--autoreload"),
    ("env_files", "--env-file"),
)


def run_options(
    *,
    launch: Sequence[str] = (),
    nolaunch: Sequence[str] = (),
    exclude: Sequence[str] = (),
    include: Sequence[str] = (),
    autoreload: Sequence[str] = (),
    noreload: bool = False,
    pidfile: str | Path | None = None,
    logfile: str | Path | None = None,
    env_file: Sequence[str | Path] = (),
) -> config.Options:
    """The run options from the command's option values (or ``start()``'s arguments)."""
    for names in (launch, nolaunch, exclude, include, autoreload):
        if isinstance(names, str):
            raise TypeError(f"expected a sequence of program names, got the string {names!r}")
    if isinstance(env_file, (str, Path)):
        raise TypeError(f"expected a sequence of paths, got {env_file!r}")
    return config.Options(
        launch=tuple(launch),
        nolaunch=tuple(nolaunch),
        exclude=tuple(exclude),
        include=tuple(include),
        autoreload=tuple(autoreload),
        noreload=noreload,
        pidfile=None if pidfile is None else str(pidfile),
        logfile=None if logfile is None else str(logfile),
        # Absolute: supervisord re-reads them on reload, from wherever it runs.
        env_files=tuple(str(Path(path).absolute()) for path in env_file),
    )


def command_line(opts: config.Options) -> list[str]:
    """The command-line options that give ``opts`` back through ``run_options``."""
    args = [f"{flag}={value}" for field, flag in _REPEATED for value in getattr(opts, field)]
    if opts.noreload:
        args.append("--noreload")
    if opts.pidfile is not None:
        args.append(f"--pidfile={opts.pidfile}")
    if opts.logfile is not None:
        args.append(f"--logfile={opts.logfile}")
    return args


def conf_command_line(opts: config.Options) -> str:
    """``command_line(opts)`` as words of a supervisord ``command=``.

    supervisord expands ``%(name)s`` in a command, then splits it as a shell would:
    hence ``%`` doubled and shell quoting.
    """
    return " ".join(shlex.quote(arg).replace("%", "%%") for arg in command_line(opts))


def hoist_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """Move our own options that follow the action in front of it.

    Everything from the action on is kept for supervisorctl (``tail -f web``), but
    ``manage.py supervisor status --project-dir=X`` should work as well.
    """
    argv = list(argv)
    known = parser._option_string_actions
    start = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), len(argv))
    # A value-taking option right before the first bare word owns that word.
    while start < len(argv) and start > 0:
        before = known.get(argv[start - 1])
        if before is None or before.nargs == 0:
            break
        start = next(
            (i for i in range(start + 1, len(argv)) if not argv[i].startswith("-")), len(argv)
        )
    head, tail, rest = argv[:start], [], argv[start:]
    i = 0
    while i < len(rest):
        arg = rest[i]
        action = known.get(arg.split("=", 1)[0]) if i > 0 else None
        # A short option with its value attached: -xweb.
        attached = i > 0 and action is None and arg[:1] == "-" and arg[1:2] not in ("", "-")
        if attached:
            action = known.get(arg[:2])
            if action is None or action.nargs == 0:
                action = None
        if action is None:
            tail.append(arg)
            i += 1
            continue
        takes_value = action.nargs != 0 and "=" not in arg and not attached
        head.extend(rest[i : i + 1 + takes_value])
        i += 1 + takes_value
    return head + tail


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's own options to ``parser`` (Django adds its common ones)."""
    parser.add_argument("action", nargs=argparse.REMAINDER, help="supervisorctl action")
    parser.add_argument("--project-dir", help="the project directory (default: found)")
    parser.add_argument(
        "--config-file", help="the project config file (default: PROJECT_DIR/supervisord.conf)"
    )
    for short, long, help_text in (
        ("-l", "--launch", "start PROG at startup (autostart=true)"),
        ("-n", "--nolaunch", "do not start PROG at startup (autostart=false)"),
        ("-x", "--exclude", "leave PROG out of the config"),
        ("-i", "--include", "bring back a PROG excluded in the config"),
        ("-r", "--autoreload", "restart only PROG on code changes"),
    ):
        parser.add_argument(
            short, long, action="append", default=[], metavar="PROG", help=help_text
        )
    parser.add_argument("--noreload", action="store_true", help="disable autoreload")
    parser.add_argument(
        "-d", "--daemonize", action="store_true", help="run supervisord in the background"
    )
    parser.add_argument(
        "--raw",
        "--no-prefix",
        dest="raw",
        action="store_true",
        help="show program output without the time and name prefix",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="show supervisord's messages only"
    )
    parser.add_argument("--pidfile", help="supervisord's pid file")
    parser.add_argument("--logfile", help="supervisord's log file")
    parser.add_argument(
        "--env-file",
        action="append",
        default=[],
        metavar="PATH",
        help="a dotenv file whose variables every program gets; repeatable",
    )
    parser.add_argument(
        "--json", action="store_true", help="with status: print the processes as JSON"
    )
    parser.add_argument(
        "--stats", action="store_true", help="with status: add CPU % and resident memory"
    )


def options_from(parsed: Mapping[str, Any]) -> config.Options:
    """The run options from the command's parsed options (``handle()``'s keywords)."""
    return run_options(
        launch=parsed["launch"],
        nolaunch=parsed["nolaunch"],
        exclude=parsed["exclude"],
        include=parsed["include"],
        autoreload=parsed["autoreload"],
        noreload=parsed["noreload"],
        pidfile=parsed["pidfile"],
        logfile=parsed["logfile"],
        env_file=parsed["env_file"],
    )
