"""System checks: ``manage.py check`` validates the merged configuration, with stable ids.

Most cases run the check in-process on a project directory of their own
(``override_settings``); two run the real ``manage.py check`` and ``manage.py supervisor``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from djsupervisor import checks
from djsupervisor.errors import ConfigError, EnvFileError, SupervisorError
from tests.utils import Project, make_project, site_settings


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    with site_settings(tmp_path) as directory:
        yield directory


def messages(site: Path, conf: str | None, **settings: Any) -> list[tuple[str, str]]:
    """Run the config check on ``conf``; return ``(id, message)`` pairs."""
    if conf is not None:
        (site / "supervisord.conf").write_text(textwrap.dedent(conf))
    with override_settings(**settings):
        return [(m.id or "", m.msg) for m in checks.check_config()]


OK = "[program:a]\ncommand=/bin/true\n"


@pytest.mark.parametrize(
    ("conf", "settings", "ident", "fragment"),
    [
        pytest.param(
            "[program:a]\ncommand=a\n[porgram:b]\n",
            {},
            "E001",
            "supervisord.conf:3: unknown section type [porgram:b]",
            id="syntax",
        ),
        pytest.param(
            OK,
            {"SUPERVISOR_CONFIG_FILE": "prod.conf"},
            "E002",
            "prod.conf: config file not found",
            id="missing-file",
        ),
        pytest.param(
            None, {}, "E002", "supervisord.conf: no programs configured", id="no-programs"
        ),
        pytest.param(
            "[program:a]\n\ncommand={{ PYTON }}\n",
            {},
            "E003",
            "supervisord.conf:3: unknown template variable 'PYTON'",
            id="template-variable",
        ),
        pytest.param(
            "[program:a]\ncommand=a\n{% if %}\n",
            {},
            "E003",
            "supervisord.conf:3: template error: ",
            id="template-syntax",
        ),
        pytest.param(
            "[program:a]\nautostart=true\n",
            {},
            "E004",
            "[program:a] has no command",
            id="no-command",
        ),
        pytest.param(
            "[program:a]\ncommand=a\nstopsignal=LOUD\n",
            {},
            "E005",
            "[program:a] (option stopsignal = LOUD): value 'LOUD' is not a valid signal name",
            id="rejected",
        ),
        pytest.param(
            OK,
            {"SUPERVISOR_CONTRIB": ["django_q", "nope"]},
            "E006",
            "SUPERVISOR_CONTRIB: no contrib config for app label 'nope' (available: ",
            id="contrib-label",
        ),
        pytest.param(
            "[program:a]\ncommand=a\ndepends_on=b\n",
            {},
            "E007",
            "[program:a]: depends_on names no program 'b'",
            id="depends-on",
        ),
        pytest.param(
            "[program:a]\ncommand=a\n[group:g]\nprograms=a,b\n",
            {},
            "E007",
            "supervisord.conf:3: [group:g] programs names no program 'b'",
            id="group",
        ),
        pytest.param(
            OK,
            {"SUPERVISOR_ENV_FILES": [".env"]},
            "E008",
            ".env: env file not found",
            id="env-file",
        ),
        pytest.param(
            OK,
            {"SUPERVISOR_ENV_FILES": ".env"},
            "E009",
            "SUPERVISOR_ENV_FILES must be a list of paths, got '.env'",
            id="setting-type",
        ),
        pytest.param(
            OK,
            {"SUPERVISOR_CONTRIB": "django_q"},
            "E009",
            "SUPERVISOR_CONTRIB must be a list of strings, got 'django_q'",
            id="contrib-type",
        ),
        pytest.param(
            OK,
            {"SUPERVISOR_CELERY_APP": 3},
            "E009",
            "SUPERVISOR_CELERY_APP must be a string, got 3",
            id="celery-app-type",
        ),
    ],
)
def test_each_kind_of_error_has_its_id(
    site: Path, conf: str | None, settings: dict[str, Any], ident: str, fragment: str
) -> None:
    [(found, message)] = messages(site, conf, **settings)
    assert found == f"djsupervisor.{ident}"
    assert fragment in message
    assert "\n" not in message


def test_a_valid_config_passes(site: Path) -> None:
    assert messages(site, OK) == []


def test_autoreload_without_debug_is_a_warning(site: Path) -> None:
    conf = OK + "[program:autoreload]\nexclude=false\n"
    [(ident, message)] = messages(site, conf, DEBUG=False)
    assert (ident, message) == (
        "djsupervisor.W001",
        "the autoreload program is enabled while DEBUG is off",
    )
    # In DEBUG it is the point; and --noreload-style exclusion silences it.
    assert messages(site, conf, DEBUG=True) == []
    assert messages(site, OK, DEBUG=False) == []


def test_contrib_label_of_an_app_not_installed_is_a_warning(site: Path) -> None:
    [(ident, message)] = messages(site, OK, SUPERVISOR_CONTRIB=["django_q"])
    assert ident == "djsupervisor.W002"
    assert message.startswith("SUPERVISOR_CONTRIB names 'django_q', which is not an installed app")
    assert messages(site, OK, SUPERVISOR_CONTRIB=[]) == []


def test_the_check_is_registered_with_django(site: Path) -> None:
    (site / "supervisord.conf").write_text("[program:a]\nautostart=true\n")
    ids = [m.id for m in run_checks()]
    assert "djsupervisor.E004" in ids


def test_check_ids_follow_the_error_class_hierarchy() -> None:
    class Special(EnvFileError):
        pass

    assert checks.check_id(Special("x")) == "djsupervisor.E008"
    assert checks.check_id(ConfigError("x")) == "djsupervisor.E001"
    assert checks.check_id(SupervisorError("x")) == "djsupervisor.E001"


# --- the real commands: one validation path ---------------------------------------------


@pytest.fixture
def proj(tmp_path: Path) -> Iterator[Project]:
    made = make_project(tmp_path / "proj", "[program:a]\ncommand=a\ndepends_on=ghost\n")
    yield made
    made.cleanup()


def test_manage_py_check_and_the_command_report_the_same_problem(proj: Project) -> None:
    out, err, code = proj.manage("check")
    where = f"{proj.path}/supervisord.conf:1: [program:a]"
    assert code == 1
    assert out == ""
    assert f"?: (djsupervisor.E007) {where}: depends_on names no program 'ghost'" in err
    assert "Traceback" not in err
    for args in (["supervisor"], ["supervisor", "getconfig"]):
        out, err, code = proj.manage(*args)
        assert (out, code) == ("", 1)
        assert err == f"CommandError: {where}: depends_on names no program 'ghost'\n"


def test_manage_py_check_shows_warnings_without_failing(proj: Project) -> None:
    proj.write(
        "supervisord.conf", "[program:a]\ncommand=/bin/true\n[program:autoreload]\nexclude=false\n"
    )
    out, err, code = proj.manage("check")
    assert (out, code) == ("", 0)
    assert "(djsupervisor.W001) the autoreload program is enabled while DEBUG is off" in err
    assert "System check identified 1 issue (0 silenced)." in err
