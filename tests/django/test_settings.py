"""Settings are checked once, by type (issue 14): a wrong type is E009, naming the setting.

A string where a list is expected used to become a list of its characters
(``".*"`` -> ``[".", "*"]``): the autoreloader then ignored nothing it should.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from djsupervisor import checks
from djsupervisor.conf import conf
from djsupervisor.errors import SettingError
from tests.utils import Project, make_project, site_settings, sleeper


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    with site_settings(tmp_path) as directory:
        (directory / "supervisord.conf").write_text("[program:a]\ncommand=/bin/true\n")
        yield directory


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param(
            {"SUPERVISOR_AUTORELOAD_IGNORE_PATTERNS": ".*"},
            "SUPERVISOR_AUTORELOAD_IGNORE_PATTERNS must be a list of strings, got '.*'",
            id="ignore-patterns-string",
        ),
        pytest.param(
            {"SUPERVISOR_AUTORELOAD_PATTERNS": ["*.py", 3]},
            "SUPERVISOR_AUTORELOAD_PATTERNS must be a list of strings; 3 is not one",
            id="patterns-item",
        ),
        pytest.param(
            {"SUPERVISOR_RUNTIME_DIR": 5},
            "SUPERVISOR_RUNTIME_DIR must be a path, got 5",
            id="runtime-dir",
        ),
        pytest.param(
            {"SUPERVISOR_CONFIG_FILE": ["a.conf"]},
            "SUPERVISOR_CONFIG_FILE must be a path, got ['a.conf']",
            id="config-file",
        ),
    ],
)
def test_a_wrong_type_is_one_e009_naming_the_setting(
    site: Path, settings: dict[str, Any], message: str
) -> None:
    with override_settings(**settings):
        found = [(m.id, m.msg) for m in checks.check_config()]
        with pytest.raises(SettingError) as raised:
            conf.validate()
    assert found == [("djsupervisor.E009", message)]
    assert str(raised.value) == message


def test_right_types_pass(site: Path) -> None:
    with override_settings(
        SUPERVISOR_AUTORELOAD_PATTERNS=("*.py", "*.html"),
        SUPERVISOR_AUTORELOAD_IGNORE_PATTERNS=[],
    ):
        assert checks.check_config() == []
        assert conf.SUPERVISOR_AUTORELOAD_PATTERNS == ["*.py", "*.html"]
        assert conf.SUPERVISOR_AUTORELOAD_IGNORE_PATTERNS == []


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = make_project(
        tmp_path / "proj",
        f"[program:one]\ncommand={sleeper('one')}\n",
        extra_settings='SUPERVISOR_AUTORELOAD_IGNORE_PATTERNS = ".*"\n',
    )
    yield proj
    proj.cleanup()


def test_manage_py_check_and_the_command_name_the_setting(project: Project) -> None:
    out, err, code = project.manage("check")
    assert code == 1
    assert (
        "?: (djsupervisor.E009) SUPERVISOR_AUTORELOAD_IGNORE_PATTERNS must be a list of "
        "strings, got '.*'" in err
    ), err

    out, err, code = project.manage("supervisor", "getconfig")
    assert (out, code) == ("", 1)
    assert err == (
        "CommandError: SUPERVISOR_AUTORELOAD_IGNORE_PATTERNS must be a list of strings, got '.*'\n"
    )
