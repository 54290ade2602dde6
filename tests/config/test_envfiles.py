"""dotenv files (``SUPERVISOR_ENV_FILES``, ``--env-file``): every program's environment.

Values are checked through supervisord's own parser (``runtime.build_options``): what
a program gets is what the file says, or the config is refused with one line.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from djsupervisor import checks
from djsupervisor.config import Options, envfiles, project
from djsupervisor.errors import EnvFileError
from tests.utils import Project, make_project, site_settings

needs_dotenv = pytest.mark.skipif(
    importlib.util.find_spec("dotenv") is None,
    reason="python-dotenv is not installed (pip install -e '.[test]')",
)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    with site_settings(tmp_path, SUPERVISOR_ENV_FILES=[]) as directory:
        yield directory


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def environments(opts: Options | None = None, **settings: Any) -> dict[str, dict[str, str]]:
    """Each process's environment as supervisord parsed it from the merged config."""
    with override_settings(**settings):
        located = project.locate()
        merged = checks.validate(located, opts or Options())
        from djsupervisor.server import runtime

        project.ensure_runtime_dir(located.runtime_dir)  # validate() creates nothing
        options = runtime.build_options(lambda: merged, str(located.config_file))
    return {
        process.name: process.environment
        for group in options.process_group_configs
        for process in group.process_configs
    }


# Every value supervisord's environment= can carry, as the file spells it.
TRICKY = {
    "PLAIN": ("PLAIN=value", "value"),
    "SPACES": ("SPACES='two words  here'", "two words  here"),
    "COMMA": ("COMMA=a,b=c", "a,b=c"),
    "PERCENT": ("PERCENT=100%(x)s%", "100%(x)s%"),
    "DQUOTE": ("DQUOTE='say \"hi\" now'", 'say "hi" now'),
    "SQUOTE": ('SQUOTE="it\'s"', "it's"),
    "HASH": ("HASH='a#b;c'", "a#b;c"),
    "BACKSLASH": ("BACKSLASH='C:\\dir\\x'", "C:\\dir\\x"),
    "DOLLAR": ("DOLLAR='$HOME $'", "$HOME $"),
    "EMPTY": ("EMPTY=", ""),
    "UNICODE": ("UNICODE=ünïcødé", "ünïcødé"),
    "URL": ("URL=postgres://u:p@h:5432/db?x=1&y=2", "postgres://u:p@h:5432/db?x=1&y=2"),
}


@needs_dotenv
def test_values_reach_programs_exactly(site: Path) -> None:
    write(site / "supervisord.conf", "[program:a]\ncommand=a\n")
    lines = "\n".join(line for line, _ in TRICKY.values())
    (site / ".env").write_text(f"# a comment\nexport EXPORTED=yes\nNOVALUE\n{lines}\n")
    env = environments(SUPERVISOR_ENV_FILES=[".env"])["a"]
    assert env == {"EXPORTED": "yes", **{key: value for key, (_, value) in TRICKY.items()}}


@needs_dotenv
def test_precedence(site: Path, tmp_path: Path) -> None:
    write(
        site / "supervisord.conf",
        """\
        [supervisord]
        environment=OWN_GLOBAL=supervisord,SHARED=supervisord
        [program:a]
        command=a {{ environ.FROM_FILE }} {{ environ.LATER }}
        environment=SHARED=program,PROGRAM=a
        [program:b]
        command=b
        """,
    )
    write(site / "base.env", "FROM_FILE=base\nLATER=base\nOWN_GLOBAL=file\nSHARED=file\n")
    later = write(tmp_path / "later.env", "LATER=later\nPATH_ONLY_HERE=1\n")
    opts = Options(env_files=(str(later),))
    env = environments(opts, SUPERVISOR_ENV_FILES=[Path("base.env")])
    # Later files win; the user's [supervisord] environment= wins over files; a
    # program's own environment= wins over everything.
    assert env["b"] == {
        "FROM_FILE": "base",
        "LATER": "later",
        "OWN_GLOBAL": "supervisord",
        "SHARED": "supervisord",
        "PATH_ONLY_HERE": "1",
    }
    assert env["a"]["SHARED"] == "program"
    assert env["a"]["PROGRAM"] == "a"
    # The template context's environ has the files' variables too.
    with override_settings(SUPERVISOR_ENV_FILES=["base.env"]):
        merged = project.merged_sections(project.locate(), opts)
    assert merged.sections["program:a"]["command"] == "a base later"


@needs_dotenv
@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("A=1\nB='never closed\n", '.env:2: cannot parse "B=\'never closed"'),
        ("A='two\nlines'\n", ".env: variable A has a multi-line value"),
        ("A='x ;comment'\n", ".env: variable A has ' ;' or ' #' in its value"),
        ("A='\"quoted\"'\n", ".env: variable A has a value starting or ending with a quote"),
        ('A="both \\" and \' kinds"\n', ".env: variable A has both kinds of quotes"),
        ("A.B=1\n", ".env: variable A.B is not a valid variable name"),
    ],
)
def test_values_supervisord_would_alter_are_refused(site: Path, text: str, fragment: str) -> None:
    write(site / "supervisord.conf", "[program:a]\ncommand=a\n")
    (site / ".env").write_text(text)
    with override_settings(SUPERVISOR_ENV_FILES=[".env"]), pytest.raises(EnvFileError) as error:
        project.merged_sections(project.locate(), Options())
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)


def test_without_python_dotenv_a_one_line_error(
    site: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write(site / "supervisord.conf", "[program:a]\ncommand=a\n")
    monkeypatch.setitem(sys.modules, "dotenv", None)
    env = write(tmp_path / "x.env", "A=1\n")
    with pytest.raises(CommandError) as error:
        call_command("supervisor", "getconfig", "--env-file", str(env), stdout=io.StringIO())
    assert str(error.value) == (
        "env files (SUPERVISOR_ENV_FILES, --env-file) need python-dotenv: "
        "pip install 'djsupervisor[dotenv]'"
    )
    # Without env files python-dotenv is never needed.
    out = io.StringIO()
    call_command("supervisor", "getconfig", stdout=out)
    assert "[program:a]" in out.getvalue()


def test_environment_option_keeps_the_users_own_last() -> None:
    assert envfiles.environment_option({"A": "1", "B": "x'y"}, " C=3,A=own ") == (
        'A="1",B="x\'y",C=3,A=own'
    )
    assert envfiles.environment_option({"P": "5%"}, None) == 'P="5%%%%"'


# --- through the real command ------------------------------------------------------------

DUMP = """\
import json, os, sys, time
keys = sys.argv[2:]
with open(sys.argv[1], "w") as out:
    json.dump({key: os.environ.get(key) for key in keys}, out)
print("dumped", flush=True)
time.sleep(3600)
"""


@pytest.fixture
def proj(tmp_path: Path) -> Iterator[Project]:
    made = make_project(
        tmp_path / "proj",
        """
        [program:dump]
        command={{ PYTHON }} {{ PROJECT_DIR }}/dump.py {{ PROJECT_DIR }}/env.json A B C
        environment=C=program
        startsecs=0
        """,
        extra_settings="SUPERVISOR_ENV_FILES = ['.env']",
    )
    made.write("dump.py", DUMP)
    yield made
    made.cleanup()


@needs_dotenv
def test_env_files_reach_a_running_program(proj: Project, tmp_path: Path) -> None:
    proj.write(".env", "A=from-settings-file\nB=from-settings-file\nC=file\n")
    (tmp_path / "cli.env").write_text("B='from the command line'\n")
    # Relative to the working directory, like --config-file; repeatable.
    args = ["--env-file", "../cli.env", "--env-file=../cli.env"]
    out, err, code = proj.manage("supervisor", "getconfig", *args)
    assert (err, code) == ("", 0)
    assert 'environment = A="from-settings-file",B="from the command line",C="file"' in out
    server = proj.start(*args)
    dumped = proj.path / "env.json"
    proj.wait_for(lambda: dumped.exists() and dumped.read_text().endswith("}"), what="env.json")
    assert json.loads(dumped.read_text()) == {
        "A": "from-settings-file",
        "B": "from the command line",
        "C": "program",
    }
    # Files are read afresh: update restarts the programs whose environment changed.
    dumped.unlink()
    proj.write(".env", "A=changed\n")
    out, err, code = proj.manage("supervisor", "update")
    assert (out, err, code) == ("dump: stopped\ndump: updated process group\n", "", 0)
    proj.wait_for(lambda: dumped.exists() and dumped.read_text().endswith("}"), what="env.json")
    assert json.loads(dumped.read_text()) == {
        "A": "changed",
        "B": "from the command line",
        "C": "program",
    }
    out, err, code = proj.manage("supervisor", "shutdown")
    assert (out, err, code) == ("Shut down\n", "", 0)
    assert server.wait(timeout=20) == 0


@needs_dotenv
def test_a_missing_env_file_is_a_one_line_error(proj: Project) -> None:
    out, err, code = proj.manage("supervisor", "--env-file", "nope.env")
    assert (out, code) == ("", 1)
    # SUPERVISOR_ENV_FILES is read first: its missing file is the one reported.
    assert err == f"CommandError: {proj.path}/.env: env file not found\n"
    proj.write(".env", "A=1\n")
    out, err, code = proj.manage("supervisor", "getconfig", "--env-file", "nope.env")
    assert (out, code) == ("", 1)
    assert err == f"CommandError: {proj.path}/nope.env: env file not found\n"
