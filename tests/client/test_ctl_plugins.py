"""supervisorctl plugins (``[ctlplugin:x]``) reach the in-process supervisorctl.

The client reads only the sections supervisorctl uses (``channel.client_sections``):
its own and the plugins'.
"""

from __future__ import annotations

from pathlib import Path

from tests.utils import Project, make_project, sleeper

PLUGIN = """
from supervisor.supervisorctl import ControllerPluginBase


class Hello(ControllerPluginBase):
    def __init__(self, controller, greeting="hello"):
        super().__init__(controller)
        self.greeting = greeting

    def do_hello(self, arg):
        self.ctl.output(f"{self.greeting} from a plugin")


def make(controller, **config):
    return Hello(controller, **config)
"""

CONF = f"""
[program:one]
command={sleeper("one")}

[ctlplugin:hello]
supervisor.ctl_factory = helloplugin:make
greeting = bonjour
"""


def test_a_ctlplugin_command_runs(projects: list[Project], tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", CONF)
    projects.append(project)
    project.write("helloplugin.py", PLUGIN)
    project.start()
    project.wait_running("one")
    assert project.manage("supervisor", "hello") == ("bonjour from a plugin\n", "", 0)
