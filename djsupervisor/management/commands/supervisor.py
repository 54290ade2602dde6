"""``manage.py supervisor``: run the project's programs, or control the running set."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

# What only one path needs (the server, export, JSON status, the watcher) is imported
# there: every action pays for this module's imports before it starts.
from djsupervisor import checks, cli, config
from djsupervisor.client import ctl
from djsupervisor.config.project import (
    Project,
    credentials,
    ensure_runtime_dir,
    locate,
    merged_sections,
)
from djsupervisor.errors import ConfigError, SupervisorError

if TYPE_CHECKING:
    from djsupervisor.server.console import Console

#: Actions djsupervisor handles itself; every other one goes to supervisorctl.
OWN_ACTIONS = ("getconfig", "shell")


def validate(project: Project, opts: config.Options, *, supervisord: bool = True) -> config.Merged:
    """Merge the config and (unless told not to) have supervisord's own parser check it."""
    # The same path as 'manage.py check'.
    return checks.validate(project, opts, supervisord=supervisord)


def default_channel(project: Project) -> config.Merged:
    """Only the control channel djsupervisor adds when the config sets up none."""
    username, password = credentials(project)
    sections: config.Sections = {}
    config.add_control_channel(
        sections,
        socket_path=str(project.socket_path),
        username=username,
        password=password,
        password_hash="",  # the server side's: not needed to connect
    )
    return config.Merged(sections)


def output_fd(stream: Any) -> int:
    """The file descriptor behind a command's stdout (the process's own if it has none)."""
    try:
        return int(getattr(stream, "_out", stream).fileno())
    except (AttributeError, OSError, ValueError):
        return sys.stdout.fileno()


class Command(BaseCommand):
    help = (
        "Run the project's programs under supervisord (no action), or control them: "
        "ACTION is any supervisorctl command (status, start, stop, restart, tail, ...), "
        "'shell' for the interactive prompt, 'getconfig' to print the merged config, or "
        "'export systemd|procfile|compose|kubernetes' to translate it for production."
    )
    # Checks run only before starting supervisord: control actions must stay fast.
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parse_args = parser.parse_args

        def parse_hoisted(args: Sequence[str] | None = None, namespace: Any = None) -> Any:
            argv = sys.argv[2:] if args is None else args
            return parse_args(cli.hoist_options(parser, argv), namespace)

        parser.parse_args = parse_hoisted  # type: ignore[method-assign,assignment]
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
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

    def handle(
        self,
        *args: str,
        action: list[str],
        project_dir: str | None,
        config_file: str | None,
        launch: list[str],
        nolaunch: list[str],
        exclude: list[str],
        include: list[str],
        autoreload: list[str],
        noreload: bool,
        daemonize: bool,
        pidfile: str | None,
        logfile: str | None,
        raw: bool = False,
        quiet: bool = False,
        env_file: Sequence[str] = (),
        json: bool = False,
        **options: Any,
    ) -> None:
        if action and " " in action[0].strip():
            # supervisorctl joins its arguments into one line: 'tail -100000' web works.
            action = action[0].split() + action[1:]
        if json and action[:1] != ["status"]:
            raise CommandError("--json works with the status action only", returncode=2)
        opts = cli.run_options(
            launch=launch,
            nolaunch=nolaunch,
            exclude=exclude,
            include=include,
            autoreload=autoreload,
            noreload=noreload,
            pidfile=pidfile,
            logfile=logfile,
            env_file=env_file,
        )
        try:
            project = locate(project_dir, config_file)
            if not action:
                # A broken config is one CommandError line, before the system checks
                # (which would report the same problem as a multi-line SystemCheckError).
                # supervisord's own parse of it comes with the first round, below.
                validate(project, opts, supervisord=False)
                # Our own check would build the default config, not this run's
                # (--config-file, --project-dir): that was validated just now.
                with checks.config_already_validated():
                    self.check()
                console = None
                if not daemonize:
                    from djsupervisor.server.console import make_console

                    console = make_console(
                        no_color=options.get("no_color", False),
                        force_color=options.get("force_color", False),
                        prefix=not raw,
                        quiet=quiet,
                        fd=output_fd(self.stdout),
                    )
                try:
                    self.serve(project, opts, daemonize=daemonize, console=console)
                finally:
                    if console is not None:
                        console.close()
            elif action[0] == "getconfig":
                if action[1:]:
                    extra = " ".join(action[1:])
                    raise CommandError(f"getconfig takes no arguments, got {extra!r}")
                # Print only what supervisord would accept.
                self.stdout.write(config.serialize(validate(project, opts).sections))
            elif action == ["autoreload"]:  # hidden: the watcher program's own command
                from djsupervisor.autoreload.watcher import watch

                watch(project, opts, stdout=self.stdout)
            elif action[0] == "export":
                from djsupervisor import export

                export.run(project, opts, action[1:], stdout=self.stdout, stderr=self.stderr)
            else:
                self.control(project, opts, action, as_json=json)
        except SupervisorError as error:
            raise CommandError(str(error), returncode=getattr(error, "returncode", 1)) from None

    def serve(
        self,
        project: Project,
        opts: config.Options,
        *,
        daemonize: bool,
        console: Console | None = None,
    ) -> None:
        """Run supervisord in this process until it shuts down (or detaches)."""
        from djsupervisor.server import runtime, succession

        def load() -> config.Merged:
            return merged_sections(project, opts)

        configfile = str(project.config_file)
        ensure_runtime_dir(project.runtime_dir)
        lock = runtime.instance_lock(
            str(project.lock_path),
            f"supervisord is already running for this project ({project.socket_path}); "
            "see 'manage.py supervisor status', or stop it with 'manage.py supervisor shutdown'",
        )
        # Right after 'shutdown' the previous instance may still be stopping programs.
        succession.wait_for_previous(
            project.lock_path,
            load(),
            lambda: ctl.ping(*ctl.client_options(load, configfile).channel),
        )
        with lock, runtime.process_state():
            try:
                reason = runtime.run_rounds(
                    load,
                    configfile,
                    daemonize=daemonize,
                    hangup_stops=runtime.has_terminal(),
                    console=console,
                    project_dir=str(project.directory),
                )
                if reason:
                    raise CommandError(reason, returncode=1)
            except runtime.Detached as detached:
                client = ctl.client_options(load, configfile)
                runtime.wait_ready(
                    detached.pid,
                    lambda: ctl.is_up(*client.channel),
                    timeout=30.0,
                )
                self.stdout.write(
                    f"supervisord is running in the background (pid {detached.pid}); "
                    "see 'manage.py supervisor status'"
                )

    def control(
        self, project: Project, opts: config.Options, action: list[str], *, as_json: bool = False
    ) -> None:
        """Run one supervisorctl action (or the shell) against the running supervisord."""

        def load() -> config.Merged:
            try:
                return merged_sections(project, opts)
            except ConfigError as error:
                # A config broken on disk must not lock the user out of the instance
                # still running the previous one (status, reread to see why, shutdown).
                self.stderr.write(f"warning: {error}; using the default control channel")
                return default_channel(project)

        client = ctl.client_options(load, str(project.config_file))
        if as_json:
            from djsupervisor.client import status
            from djsupervisor.client.supervisor import Supervisor

            handle = Supervisor(*client.channel)
            text, code = status.status_json(handle, action[1:])
            self.stdout.write(text)
        elif action[0] not in OWN_ACTIONS and not ctl.is_action(client, action[0]):
            raise CommandError(
                f"unknown action {action[0]!r}; see 'manage.py supervisor help'", returncode=2
            )
        else:
            code = ctl.run(client, action, stdout=self.stdout)
        if code and getattr(self, "_called_from_command_line", False):
            raise SystemExit(code)  # supervisorctl already said why, on stdout
        if code:
            raise CommandError(
                f"supervisorctl {action[0]} exited with status {code}", returncode=code
            )
