"""A stand-in for a task worker: print a heartbeat line at a fixed interval."""

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Print a heartbeat line every --interval seconds, forever."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=5.0)

    def handle(self, *args: Any, interval: float, **options: Any) -> None:
        beat = 0
        try:
            while True:
                beat += 1
                self.stdout.write(f"heartbeat {beat}")
                self.stdout.flush()
                time.sleep(interval)
        except KeyboardInterrupt:  # stopsignal=INT: a clean stop, not a traceback
            self.stdout.write(f"heartbeat stopped after {beat} beats")
