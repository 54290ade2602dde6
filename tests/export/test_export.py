"""``manage.py supervisor export systemd|procfile``: units and Procfiles for production hosts.

The units are parsed back and checked key by key, and with ``systemd-analyze verify``
where it exists; Procfile lines are run with ``sh -c``, as Procfile runners do.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.utils import Project, make_project, site_settings

CONF = """\
[program:web]
command={{ PYTHON }} {{ PROJECT_DIR }}/show.py --port=80%(process_num)02d "a b" 50%% $HOME
process_name=%(program_name)s_%(process_num)02d
numprocs=2
numprocs_start=1
directory={{ PROJECT_DIR }}
environment=PORT="80%(process_num)02d",GREETING="hello world"
stdout_logfile={{ PROJECT_DIR }}/web-%(process_num)02d.log
stdout_logfile_maxbytes=0
redirect_stderr=true
autorestart=true
startsecs=2
stopsignal=INT
stopwaitsecs=20

[program:worker]
command=sleep 1000
user=root
umask=027
exitcodes=0,2
startsecs=0
depends_on=migrate:completed
priority=10

[program:migrate]
command={{ PYTHON }} manage.py migrate
oneshot=true

[program:manual]
command=/bin/true
autostart=false
stdout_logfile=NONE

[eventlistener:listener]
command=/bin/cat
events=TICK_5
"""


SHOW = """\
import os, sys
print(os.getcwd(), os.environ["PORT"], os.environ["GREETING"], sys.argv[1:])
"""


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file's sections as ``(key, value)`` lists (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, _, value = line.partition("=")
        current.append((key, value))
    return sections


def comments(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#")]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    # DEBUG: the autoreload program is never exported.
    with site_settings(tmp_path, SUPERVISOR_ENV_FILES=[], DEBUG=True) as directory:
        (directory / "supervisord.conf").write_text(CONF)
        (directory / "show.py").write_text(SHOW)
        yield directory


def export(*args: str) -> str:
    out = io.StringIO()
    call_command("supervisor", "export", *args, stdout=out)
    return out.getvalue()


def test_systemd_units(site: Path, tmp_path: Path) -> None:
    units = tmp_path / "units"
    out = export("systemd", "--output", str(units), "--user", "www-data")
    names = ["site-web@.service", "site-worker.service", "site-migrate.service"]
    names += ["site-manual.service", "site.target"]
    assert out == f"wrote 5 units to {units}: {', '.join(names)}\n"
    assert sorted(p.name for p in units.iterdir()) == sorted(names)
    text = {name: (units / name).read_text() for name in names}
    unit = {name: parse_unit(body) for name, body in text.items()}
    python = sys.executable

    assert unit["site.target"] == {
        "Unit": [
            ("Description", "site: all programs"),
            ("Wants", "site-web@01.service"),
            ("Wants", "site-web@02.service"),
            ("Wants", "site-worker.service"),
            ("Wants", "site-migrate.service"),
        ],
        "Install": [("WantedBy", "multi-user.target")],
    }
    assert (
        "#   [eventlistener:listener]: event listeners and FastCGI programs are not exported"
        in (comments(text["site.target"]))
    )

    # numprocs > 1: one template; process_num becomes the instance name.
    assert unit["site-web@.service"] == {
        "Unit": [("Description", "site: web_%i"), ("PartOf", "site.target")],
        "Service": [
            ("Type", "simple"),
            (
                "ExecStart",
                f'{python} {site}/show.py --port=80%i "a b" 50%% $$HOME',
            ),
            ("ExecStartPost", "/bin/sleep 2"),
            ("WorkingDirectory", str(site)),
            ("User", "www-data"),
            ("Environment", '"DJANGO_SETTINGS_MODULE=tests.settings"'),
            ("Environment", '"PORT=80%i"'),
            ("Environment", '"GREETING=hello world"'),
            ("Restart", "always"),
            ("KillSignal", "SIGINT"),
            ("TimeoutStopSec", "20"),
            ("StandardOutput", f"append:{site}/web-%i.log"),
            ("StandardError", "inherit"),
        ],
        "Install": [("WantedBy", "site.target")],
    }
    # A program's own user= wins over --user; depends_on orders the units.
    worker = dict(unit["site-worker.service"]["Service"])
    assert worker["User"] == "root"
    assert worker["ExecStart"] == f"{shutil.which('sleep')} 1000"
    assert (worker["UMask"], worker["SuccessExitStatus"]) == ("0027", "2")
    assert worker["Restart"] == "on-failure"
    assert "ExecStartPost" not in worker  # startsecs=0
    assert unit["site-worker.service"]["Unit"][2:] == [
        ("After", "site-migrate.service"),
        ("Requires", "site-migrate.service"),
    ]
    assert "#   priority=10: not translated (order units with After=)" in comments(
        text["site-worker.service"]
    )
    migrate = unit["site-migrate.service"]["Service"]
    assert migrate[:3] == [
        ("Type", "oneshot"),
        ("RemainAfterExit", "yes"),
        ("ExecStart", f"{python} manage.py migrate"),
    ]
    assert ("Restart", "no") in migrate
    # autostart=false: not wanted by the target.
    manual = unit["site-manual.service"]
    assert "Install" not in manual
    assert ("StandardOutput", "null") in manual["Service"]
    assert "#   autostart=false: not wanted by the target; start it by hand" in comments(
        text["site-manual.service"]
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verifies_the_units(site: Path, tmp_path: Path) -> None:
    units = tmp_path / "units"
    export("systemd", "--output", str(units), "--name", "shop")
    files = [str(path) for path in sorted(units.iterdir()) if "@." not in path.name]
    instances = [str(units / "shop-web@01.service"), str(units / "shop-web@02.service")]
    result = subprocess.run(
        ["systemd-analyze", "verify", *files, *instances],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=units,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    assert (result.stdout, result.stderr, result.returncode) == ("", "", 0)


def test_procfile_lines_run_as_supervisord_would_run_them(site: Path) -> None:
    text = export("procfile")
    lines = text.splitlines()
    assert lines[0].startswith("# Exported by djsupervisor")
    entries = [line for line in lines if line and not line.startswith("#")]
    assert [line.split(":", 1)[0] for line in entries] == ["web_01", "web_02", "worker", "migrate"]
    assert "# autostart=false: manual: /bin/true" in lines
    assert (
        "# web_01: not translated: autorestart=true, stopsignal=INT, stopwaitsecs=20, "
        f"stdout_logfile={site}/web-01.log"
    ) in lines
    assert "# worker: not translated: user=root, depends_on=migrate:completed" in lines
    web = entries[1].split(": ", 1)[1]
    result = subprocess.run(["sh", "-c", web], capture_output=True, text=True, cwd="/", timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{site} 8002 hello world ['--port=8002', 'a b', '50%', '$HOME']\n"


def test_an_export_leaves_no_runtime_directory_behind(site: Path, tmp_path: Path) -> None:
    """It is made for another machine: a tmp cleaner should find nothing of it here."""
    runtime = tmp_path / "rt"  # site_settings' SUPERVISOR_RUNTIME_DIR, not made yet
    assert not runtime.exists()
    assert export("procfile").startswith("# Exported by djsupervisor")
    with pytest.raises(CommandError):
        export("systemd", "--user", "not a user")
    assert not runtime.exists()
    runtime.mkdir(mode=0o700)
    (runtime / "supervisord.log").write_text("kept\n")
    export("procfile")
    assert (runtime / "supervisord.log").read_text() == "kept\n"  # one it did not make: kept


def test_procfile_to_a_file(site: Path, tmp_path: Path) -> None:
    target = tmp_path / "Procfile"
    assert export("procfile", "-o", str(target)) == f"wrote {target}\n"
    assert target.read_text() == export("procfile")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "export: the following arguments are required: format"),
        (["upstart"], "export: argument format: invalid choice: 'upstart'"),
        (["systemd"], "export systemd: --output DIR is required"),
        (["systemd", "-o", "x", "--user", "two words"], "export: --user 'two words' is not a "),
        (["systemd", "-o", "x", "--name", "a/b"], "export: 'a/b' cannot name systemd units"),
        (["procfile", "--user", "www"], "export: --user applies to systemd units only"),
        (["procfile", "--bogus"], "export: unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments(site: Path, args: list[str], message: str) -> None:
    with pytest.raises(CommandError) as error:
        export(*args)
    assert str(error.value).startswith(message)
    assert error.value.returncode == 2


def test_an_output_that_is_a_file(site: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(CommandError) as error:
        export("systemd", "--output", str(tmp_path / "file"))
    assert str(error.value).startswith(f"export: cannot create {tmp_path / 'file'}: ")


@pytest.fixture
def proj(tmp_path: Path) -> Iterator[Project]:
    made = make_project(
        tmp_path / "proj", "[program:a]\ncommand=/bin/true\n[program:b]\ncommand=b\n"
    )
    yield made
    made.cleanup()


def test_through_manage_py(proj: Project) -> None:
    out, err, code = proj.manage("supervisor", "export", "systemd")
    assert (out, err, code) == ("", "CommandError: export systemd: --output DIR is required\n", 2)
    # The run's options (-x) shape the export as they shape a start.
    out, err, code = proj.manage("supervisor", "export", "procfile", "-x", "b")
    assert (err, code) == ("", 0)
    assert out.splitlines()[1:] == ["a: /bin/true"]
    out, err, code = proj.manage("supervisor", "export", "procfile")
    assert (err, code) == ("", 0)
    assert out.splitlines()[1:] == ["a: /bin/true", "b: b"]
