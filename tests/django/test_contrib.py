"""Contrib configs (``djsupervisor/contrib/<app label>/supervisord.conf``) for popular apps.

Rendering and ``SUPERVISOR_CONTRIB`` are tested without the apps. Then one project with
every app that is installed (``pip install -e '.[contrib-test]'``) runs them all: each
program must be spawned with the right command, and stay up where it needs no server
(django-q2 runs a task through its ORM broker on SQLite). django-rq needs Redis, which
is not there: its worker must be spawned with the queues of RQ_QUEUES and fail to
connect to the configured port.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from djsupervisor import config
from djsupervisor.config import Options, project, render
from djsupervisor.errors import UnknownName
from tests.utils import Project, make_project

CONTRIB = project.CONTRIB_DIR
LABELS = ["django_celery_beat", "django_dramatiq", "django_q", "django_rq", "djhuey"]


def render_contrib(label: str, **settings: Any) -> config.Sections:
    with override_settings(**settings):
        located = project.locate(project_dir="/srv/site")
        context = {**project.template_context(located, Options()), "APP_DIR": "/app"}
        path = CONTRIB / label / "supervisord.conf"
        text = render.render_file(path, context)
    return config.parse(text, str(path)).sections


def test_djsupervisor_ships_these_contrib_configs() -> None:
    assert project.contrib_labels() == LABELS


def test_rendered_commands() -> None:
    python = sys.executable
    manage = f'"{python}" "/srv/site/manage.py"'
    expected = {
        "django_q": ("qcluster", f"{manage} qcluster"),
        "django_rq": ("rqworker", f"{manage} rqworker"),
        "djhuey": ("huey", f"{manage} run_huey"),
        "django_dramatiq": ("dramatiq", f"{manage} rundramatiq"),
        "django_celery_beat": (
            "celerybeat",
            f'"{python}" -m celery --app "tests" beat --loglevel INFO '
            "--scheduler django_celery_beat.schedulers:DatabaseScheduler",
        ),
    }
    for label, (name, command) in expected.items():
        sections = render_contrib(label)
        assert list(sections) == [f"program:{name}"]
        assert sections[f"program:{name}"]["command"] == command
        assert sections[f"program:{name}"]["directory"] == "/srv/site"


def test_rq_queues_and_celery_app_come_from_settings() -> None:
    queues = {"high": {"URL": "redis://h"}, "default": {"URL": "redis://h"}}
    rq = render_contrib("django_rq", RQ_QUEUES=queues)["program:rqworker"]["command"]
    assert rq.endswith('rqworker "high" "default"')
    beat = render_contrib("django_celery_beat", SUPERVISOR_CELERY_APP="proj.tasks:app")
    assert '--app "proj.tasks:app" beat' in beat["program:celerybeat"]["command"]


@pytest.fixture
def fake_apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Apps labelled like contrib apps (no real package needed) and a site of their own."""
    root = tmp_path / "apps"
    installed = []
    for label in ("django_q", "djhuey"):
        package = root / f"fake_{label}"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "apps.py").write_text(
            "from django.apps import AppConfig\n\n"
            f"class Fake(AppConfig):\n    name = 'fake_{label}'\n    label = '{label}'\n"
        )
        installed.append(f"fake_{label}.apps.Fake")
    monkeypatch.syspath_prepend(str(root))
    site = tmp_path / "site"
    site.mkdir()
    (site / "supervisord.conf").write_text(
        "[program:web]\ncommand=web\n[program:huey]\nexclude=true\n"
    )
    return installed


@pytest.mark.parametrize(
    ("setting", "programs"),
    [
        pytest.param(True, ["qcluster", "web"], id="default"),
        pytest.param(False, ["web"], id="off"),
        pytest.param(["djhuey"], ["web"], id="only-djhuey"),
        pytest.param(["django_q", "django_rq"], ["qcluster", "web"], id="list"),
    ],
)
def test_supervisor_contrib_setting_and_project_tweaks(
    fake_apps: list[str], tmp_path: Path, setting: Any, programs: list[str]
) -> None:
    with override_settings(
        INSTALLED_APPS=["djsupervisor", *fake_apps],
        SUPERVISOR_PROJECT_DIR=tmp_path / "site",
        SUPERVISOR_RUNTIME_DIR=tmp_path / "rt",
        SUPERVISOR_CONTRIB=setting,
    ):
        merged = project.merged_sections(project.locate(), Options())
    # The project's "[program:huey] exclude=true" removes the contrib program.
    assert sorted(config.process_names(merged.sections)) == programs


def test_an_unknown_contrib_label(tmp_path: Path) -> None:
    with (
        override_settings(SUPERVISOR_CONTRIB=["django_q", "celery"]),
        pytest.raises(UnknownName) as error,
    ):
        project.find_sources(project.locate(project_dir=tmp_path))
    assert str(error.value) == (
        "SUPERVISOR_CONTRIB: no contrib config for app label 'celery' "
        f"(available: {', '.join(LABELS)})"
    )


# --- the real packages ---------------------------------------------------------------------

PACKAGES = {
    # label: (pip package, module, INSTALLED_APPS entry, program)
    "django_q": ("django-q2", "django_q", "django_q", "qcluster"),
    "django_rq": ("django-rq", "django_rq", "django_rq", "rqworker"),
    "djhuey": ("huey", "huey", "huey.contrib.djhuey", "huey"),
    "django_dramatiq": ("django-dramatiq", "django_dramatiq", "django_dramatiq", "dramatiq"),
    "django_celery_beat": (
        "django-celery-beat",
        "django_celery_beat",
        "django_celery_beat",
        "celerybeat",
    ),
}
AVAILABLE = [label for label, spec in PACKAGES.items() if importlib.util.find_spec(spec[1])]
REDIS_PORT = 6399  # nothing listens there

SETTINGS = f"""
INSTALLED_APPS += {[PACKAGES[label][2] for label in AVAILABLE]!r}
Q_CLUSTER = {{"name": "t", "orm": "default", "workers": 1, "timeout": 10, "retry": 20, "poll": 0.1}}
RQ_QUEUES = {{
    "default": {{"HOST": "127.0.0.1", "PORT": {REDIS_PORT}}},
    "low": {{"HOST": "127.0.0.1", "PORT": {REDIS_PORT}}},
}}
HUEY = {{"huey_class": "huey.SqliteHuey", "filename": str(BASE_DIR / "huey.db")}}
DRAMATIQ_BROKER = {{"BROKER": "dramatiq.brokers.stub.StubBroker", "MIDDLEWARE": []}}
CELERY_BROKER_URL = "memory://"
"""

OBSERVER = """\
import json
import time
from pathlib import Path

from django.apps import AppConfig

from djsupervisor.signals import process_state_changed

LOG = Path(__file__).resolve().parent.parent / "spawned.log"


def record(sender, *, name, to_state, pid, **kwargs):
    # startsecs=0: RUNNING comes right after the spawn, before any exec of its own.
    if to_state == "RUNNING":
        # posix_spawn returns once the child's exec has switched its memory, which can
        # be just before the kernel fills in its arguments.
        for _ in range(200):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\\0")[:-1]
            if argv:
                break
            time.sleep(0.01)
        with LOG.open("a") as log:
            log.write(json.dumps([name, pid, argv]) + "\\n")


class ObserverConfig(AppConfig):
    name = "observer"

    def ready(self):
        process_state_changed.connect(record)
"""

CELERY_PY = """\
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproj.settings")
app = Celery("testproj")
app.config_from_object("django.conf:settings", namespace="CELERY")
"""

PROJECT_CONF = """\
; Spawned commands are read at RUNNING: no startsecs wait.
[program:__overrides__]
startsecs = 0
; A project tweaks a contrib program like any app's.
[program:dramatiq]
command = "{{ PYTHON }}" "{{ PROJECT_DIR }}/manage.py" rundramatiq --processes 1 --threads 1
"""


def spawned(proj: Project) -> dict[str, list[tuple[int, list[str]]]]:
    found: dict[str, list[tuple[int, list[str]]]] = {}
    path = proj.path / "spawned.log"
    for line in path.read_text().splitlines() if path.exists() else []:
        name, pid, argv = json.loads(line)
        found.setdefault(name, []).append((pid, argv))
    return found


@pytest.fixture(scope="module")
def contrib_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    if not AVAILABLE:
        pytest.skip("no contrib app is installed (pip install -e '.[contrib-test]')")
    proj = make_project(
        tmp_path_factory.mktemp("contrib") / "proj",
        PROJECT_CONF,
        apps={"observer": None},
        extra_settings=SETTINGS,
    )
    proj.write("observer/apps.py", OBSERVER)
    proj.write(
        "testproj/tasks.py",
        "from pathlib import Path\n\n\ndef touch(path):\n    Path(path).write_text('done')\n",
    )
    if "django_celery_beat" in AVAILABLE:
        proj.write("testproj/celery.py", CELERY_PY)
        proj.write("testproj/__init__.py", "from .celery import app as celery_app\n")
    try:
        out, err, code = proj.manage("migrate", "-v0")
        assert (out, err, code) == ("", "", 0)
        proj.start()
        programs = [PACKAGES[label][3] for label in AVAILABLE]
        proj.wait_for(lambda: set(programs) <= set(spawned(proj)), what=f"{programs} spawned")
        yield proj
    finally:
        proj.cleanup()


def require(label: str) -> None:
    package = PACKAGES[label][0]
    if label not in AVAILABLE:
        pytest.skip(f"{package} is not installed (pip install -e '.[contrib-test]')")


def manage_py(proj: Project, *args: str) -> list[str]:
    return [sys.executable, str(proj.path / "manage.py"), *args]


def assert_stays_up(proj: Project, program: str) -> None:
    [(pid, _)] = spawned(proj)[program]  # never restarted
    out, err, code = proj.manage("supervisor", "status", "--json", program)
    assert (err, code) == ("", 0)
    [info] = json.loads(out)
    assert (info["state"], info["pid"]) == ("RUNNING", pid)


def test_django_q_runs_a_task_on_its_orm_broker(contrib_project: Project) -> None:
    require("django_q")
    proj = contrib_project
    [(_, argv)] = spawned(proj)["qcluster"]
    assert argv == manage_py(proj, "qcluster")
    marker = proj.path / "task-done"
    code = f"from django_q.tasks import async_task; async_task('testproj.tasks.touch', '{marker}')"
    out, err, status = proj.manage("shell", "--no-imports", "-c", code)
    assert (out, status) == ("", 0)
    assert "Traceback" not in err
    proj.wait_for(marker.exists, timeout=20, what="the django-q task")
    assert marker.read_text() == "done"
    assert_stays_up(proj, "qcluster")


def test_huey_consumer(contrib_project: Project) -> None:
    require("djhuey")
    [(_, argv)] = spawned(contrib_project)["huey"]
    assert argv == manage_py(contrib_project, "run_huey")
    assert_stays_up(contrib_project, "huey")


def test_dramatiq_workers_with_the_projects_tweak(contrib_project: Project) -> None:
    require("django_dramatiq")
    [(_, argv)] = spawned(contrib_project)["dramatiq"]
    assert argv == manage_py(contrib_project, "rundramatiq", "--processes", "1", "--threads", "1")
    assert_stays_up(contrib_project, "dramatiq")


def test_celery_beat_with_the_database_scheduler(contrib_project: Project) -> None:
    require("django_celery_beat")
    [(_, argv)] = spawned(contrib_project)["celerybeat"]
    assert argv == [
        sys.executable,
        "-m",
        "celery",
        "--app",
        "testproj",
        "beat",
        "--loglevel",
        "INFO",
        "--scheduler",
        "django_celery_beat.schedulers:DatabaseScheduler",
    ]
    assert_stays_up(contrib_project, "celerybeat")


def test_rq_worker_is_spawned_for_the_configured_queues(contrib_project: Project) -> None:
    require("django_rq")
    proj = contrib_project
    first_pid, argv = spawned(proj)["rqworker"][0]
    assert argv == manage_py(proj, "rqworker", "default", "low")

    def refused() -> bool:
        out, _, _ = proj.manage("supervisor", "tail", "rqworker", "stderr")
        return f"connecting to 127.0.0.1:{REDIS_PORT}. Connection refused." in out

    # It ran with RQ_QUEUES' connection settings, and supervisord restarts it.
    proj.wait_for(refused, timeout=30, what="rqworker's connection error")
    assert first_pid > 0
