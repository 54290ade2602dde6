"""``manage.py supervisor``: run the project's programs, or control the running set."""

from __future__ import annotations

import functools
import gc
import sys
from collections.abc import Sequence
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

# What only one path needs (the server, export, JSON status, the watcher) is imported
# there: every action pays for this module's imports before it starts.
from djsupervisor import checks, cli, config
from djsupervisor.config.project import Project, locate, merged_sections
from djsupervisor.errors import SupervisorError


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
        cli.add_arguments(parser)

    def handle(
        self,
        *args: str,
        action: list[str],
        daemonize: bool,
        raw: bool = False,
        quiet: bool = False,
        json: bool = False,
        stats: bool = False,
        **options: Any,
    ) -> None:
        if action and " " in action[0].strip():
            # supervisorctl joins its arguments into one line: 'tail -100000' web works.
            action = action[0].split() + action[1:]
        for flag, given in (("--json", json), ("--stats", stats)):
            if given and action[:1] != ["status"]:
                raise CommandError(f"{flag} works with the status action only", returncode=2)
        opts = cli.options_from(options)
        try:
            project = locate(options["project_dir"], options["config_file"])
            if not action:
                # A broken config is one CommandError line, before the system checks
                # (which would report the same problem as a multi-line SystemCheckError).
                # supervisord's own parse of it comes with the first round, below.
                validated = checks.validate(project, opts, supervisord=False)
                # Our own check would build the default config, not this run's
                # (--config-file, --project-dir): that was validated just now.
                with checks.config_already_validated():
                    self.check()
                console = None
                if not daemonize:
                    from djsupervisor.server import foreground
                    from djsupervisor.server.console import make_console

                    console = make_console(
                        no_color=options.get("no_color", False),
                        force_color=options.get("force_color", False),
                        prefix=not raw,
                        quiet=quiet,
                        fd=foreground.output_fd(self.stdout),
                    )
                try:
                    self.serve(
                        project, opts, daemonize=daemonize, console=console, validated=validated
                    )
                finally:
                    if console is not None:
                        console.close()
            elif action[0] == "getconfig":
                if extra := " ".join(action[1:]):
                    raise CommandError(f"getconfig takes no arguments, got {extra!r}")
                # Print only what supervisord would accept.
                self.stdout.write(config.serialize(checks.validate(project, opts).sections))
            elif action == ["autoreload"]:  # hidden: the watcher program's own command
                from djsupervisor.autoreload.watcher import watch

                watch(project, opts, stdout=self.stdout)
            elif action[0] == "export":
                from djsupervisor import export

                export.run(project, opts, action[1:], stdout=self.stdout, stderr=self.stderr)
            else:
                self.control(project, opts, action, as_json=json, stats=stats)
        except SupervisorError as error:
            raise CommandError(str(error), returncode=getattr(error, "returncode", 1)) from None

    def serve(
        self,
        project: Project,
        opts: config.Options,
        *,
        daemonize: bool,
        console: Any,
        validated: config.Merged | None = None,
    ) -> None:
        """Run supervisord in this process until it shuts down (or detaches)."""
        from djsupervisor.client import channel
        from djsupervisor.server import foreground

        @functools.cache
        def address() -> tuple[str, str | None, str | None]:
            return channel.address(lambda: merged_sections(project, opts), str(project.config_file))

        foreground.serve(
            project,
            opts,
            daemonize=daemonize,
            console=console,
            ping=lambda: channel.ping(*address()),
            is_up=lambda: channel.is_up(*address()),
            write=self.stdout.write,
            validated=validated,
        )

    def control(
        self,
        project: Project,
        opts: config.Options,
        action: list[str],
        *,
        as_json: bool = False,
        stats: bool = False,
    ) -> None:
        """Run one supervisorctl action (or the shell) against the running supervisord."""
        from djsupervisor.client.control import control

        from_command_line = getattr(self, "_called_from_command_line", False)
        if from_command_line:
            # This process ends with the action: spare Django and the config the
            # collector's full passes, which an answer's allocations set off. At 1,000
            # programs they took 150 ms of a 450 ms status. Never in call_command().
            gc.freeze()
        out, warn = self.stdout, self.stderr.write
        code = control(project, opts, action, as_json=as_json, stats=stats, stdout=out, warn=warn)
        if code and from_command_line:
            raise SystemExit(code)  # supervisorctl already said why, on stdout
        if code:
            raise CommandError(
                f"supervisorctl {action[0]} exited with status {code}", returncode=code
            )
