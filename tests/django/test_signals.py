"""``djsupervisor.signals.process_state_changed``, sent inside the supervisord process.

A throw-away project's app connects receivers in ``ready()``: one appends every state
change to a file, one is the README's example (mail the admins when a program is
FATAL), and one always raises (supervisord must log it and carry on).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils import Project, make_project, program, sleeper

APPS_PY = """\
from pathlib import Path

from django.apps import AppConfig
from django.core.mail import mail_admins

from djsupervisor.signals import process_state_changed

LOG = Path(__file__).resolve().parent.parent / "states.log"


def record(sender, *, name, group, from_state, to_state, pid, expected, **kwargs):
    with LOG.open("a") as log:
        log.write(f"{sender} {group}:{name} {from_state}->{to_state} {pid} {expected}\\n")


# The README's example.
def mail_when_fatal(sender, *, name, to_state, **kwargs):
    if to_state == "FATAL":
        mail_admins(f"{name} is FATAL", f"{name} could not be started; see its log.")


def broken(sender, **kwargs):
    raise RuntimeError("receiver bug")


class ObserverConfig(AppConfig):
    name = "observer"

    def ready(self):
        process_state_changed.connect(record)
        process_state_changed.connect(mail_when_fatal)
        process_state_changed.connect(broken)
"""

SETTINGS = """
ADMINS = [("Ops", "ops@example.com")]
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = BASE_DIR / "mail"
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = make_project(
        tmp_path / "proj",
        f"""
        [program:one]
        command={sleeper("one")}
        startsecs=0
        [group:grp]
        programs=one
        [program:bad]
        command={program("crasher.py")}
        startsecs=1
        startretries=0
        """,
        apps={"observer": None},
        extra_settings=SETTINGS,
    )
    proj.write("observer/apps.py", APPS_PY)
    yield proj
    proj.cleanup()


def states(project: Project) -> list[str]:
    path = project.path / "states.log"
    return path.read_text().splitlines() if path.exists() else []


def test_receivers_get_every_state_change(project: Project) -> None:
    server = project.start()
    project.wait_for(
        lambda: "None bad:bad BACKOFF->FATAL None True" in states(project), what="bad FATAL"
    )
    project.wait_running("grp:one")
    out, err, code = project.manage("supervisor", "pid", "grp:one")
    assert (err, code) == ("", 0)
    pid = int(out)
    out, err, code = project.manage("supervisor", "shutdown")
    assert (out, err, code) == ("Shut down\n", "", 0)
    assert server.wait(timeout=20) == 0
    output = server.communicate()[0]

    lines = states(project)
    one = [line for line in lines if " grp:one " in line]
    assert one == [
        "None grp:one STOPPED->STARTING None True",
        f"None grp:one STARTING->RUNNING {pid} True",
        f"None grp:one RUNNING->STOPPING {pid} True",
        f"None grp:one STOPPING->STOPPED {pid} True",
    ]
    bad = [line for line in lines if " bad:bad " in line]
    assert bad[0] == "None bad:bad STOPPED->STARTING None True"
    assert bad[1].startswith("None bad:bad STARTING->BACKOFF ")
    assert bad[-1] == "None bad:bad BACKOFF->FATAL None True"

    # The README example mailed the admins, once, from inside supervisord. (The other
    # mails are Django's own: send_robust logs a receiver's error to "django.dispatch",
    # which mails the admins without DEBUG.)
    mails = [path.read_text() for path in (project.path / "mail").iterdir()]
    [fatal] = [text for text in mails if "Subject: [Django] bad is FATAL" in text]
    assert "To: ops@example.com" in fatal
    assert "bad could not be started; see its log." in fatal
    others = [text for text in mails if text != fatal]
    assert others
    assert all("Error calling broken in Signal.send_robust()" in text for text in others)

    # A failing receiver is logged; supervisord and the other receivers carried on.
    assert "process_state_changed receiver broken failed for one STOPPED -> STARTING: " in output
    assert "RuntimeError: receiver bug" in output
