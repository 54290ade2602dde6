"""The quick config parser reads exactly what supervisor's own parser reads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from supervisor.options import ServerOptions, UnhosedConfigParser

from djsupervisor.config.parser import QuickParser

CONFIG = """\
[DEFAULT]
stopwaitsecs = 7

[program:plain]
command = sleep 600

[program:full]
command = /bin/sh -c "echo %(program_name)s %(ENV_HOME)s %%d"
process_name = %(program_name)s_%(process_num)02d
numprocs = 3
numprocs_start = 1
directory = %(here)s
environment = A="%(ENV_HOME)s",B="x"
priority = 5
autostart = false
autorestart = true
startsecs = 0
startretries = 9
exitcodes = 0,2
stopsignal = INT
stopwaitsecs = 3
stopasgroup = true
redirect_stderr = true
stdout_logfile = %(here)s/%(program_name)s-%(process_num)d.log
stdout_logfile_maxbytes = 1KB
stdout_events_enabled = true
umask = 022
serverurl = AUTO

[program:percent]
command = printf '100%%\\n'
"""


def parse(cls: type[Any], text: str, here: str = "/srv/project") -> list[Any]:
    parser = cls()
    options = ServerOptions()
    parser.expansions = options.environ_expansions  # as read_config() does
    parser.read_string(text)
    options.here = here
    return [
        options.processes_from_section(parser, section, section.split(":", 1)[1])
        for section in parser.sections()
        if section.startswith("program:")
    ]


def test_same_process_configs_as_supervisors_parser(tmp_path: Path) -> None:
    ours, stock = (parse(cls, CONFIG, str(tmp_path)) for cls in (QuickParser, UnhosedConfigParser))
    assert [len(group) for group in ours] == [1, 3, 1]
    assert ours == stock
    full = ours[1][0]
    # Spot checks: expansion, escapes, [DEFAULT] and supervisor's own defaults.
    assert full.name == "full_01"
    home = os.environ["HOME"]
    assert full.command == f'/bin/sh -c "echo full {home} %d"'
    assert full.environment == {"A": home, "B": "x"}
    assert full.stopwaitsecs == 3 and ours[0][0].stopwaitsecs == 7
    assert ours[2][0].command == "printf '100%\\n'"
    assert ours[0][0].startretries == 3


@pytest.mark.parametrize(
    "text",
    [
        "[program:x]\nstartsecs = 1\n",  # no command
        "[program:x]\ncommand = echo %(nope)s\n",  # unknown expansion
        "[program:x]\ncommand = echo %(here\n",  # badly formatted
        "[program:x]\ncommand = sleep 1\nnumprocs = 2\n",  # process_name without process_num
    ],
)
def test_same_errors_as_supervisors_parser(text: str) -> None:
    errors = []
    for cls in (QuickParser, UnhosedConfigParser):
        with pytest.raises(ValueError) as info:
            parse(cls, text)
        errors.append(str(info.value))
    assert errors[0] == errors[1]
