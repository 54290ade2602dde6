"""``python -m build`` output installs cleanly and works outside this checkout.

Run it with ``python -m pytest tests/packaging/install_built.py`` (it builds, makes two
fresh virtualenvs and installs Django and supervisor into them, so it stays out of the
plain ``python -m pytest``; ``.ci/run`` runs it in one job). Needs the ``build`` package
and a reachable package index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils import REPO

DEMO = REPO / "tests" / "demo"


def run(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with an environment that cannot see this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run(
        [str(part) for part in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("dist")
    built = run(sys.executable, "-m", "build", "--outdir", out, REPO, cwd=out)
    assert built.returncode == 0, built.stderr
    yield out
    shutil.rmtree(out, ignore_errors=True)


def test_sdist_carries_the_demo_and_the_tests(dist: Path) -> None:
    (sdist,) = dist.glob("djsupervisor-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    expected = {
        "djsupervisor/builtin/supervisord.conf",
        "djsupervisor/py.typed",
        "tests/demo/manage.py",
        "tests/demo/supervisord.conf",
        "tests/conftest.py",
        "tests/utils.py",
        "tests/supervisor_e2e/hello.sh",
    }
    assert expected <= names, expected - names


@pytest.mark.parametrize("kind", ["whl", "tar.gz"])
def test_built_package_runs_the_demo(dist: Path, tmp_path: Path, kind: str) -> None:
    (package,) = dist.glob(f"djsupervisor-*.{kind}")
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv, cwd=tmp_path).returncode == 0
    installed = run(venv / "bin" / "pip", "install", "-q", package, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    demo = shutil.copytree(DEMO, tmp_path / "demo", ignore=shutil.ignore_patterns("*.sqlite3"))

    where = run(
        venv / "bin" / "python", "-c", "import djsupervisor; print(djsupervisor.__file__)", cwd=demo
    )
    assert where.stdout.startswith(str(venv)), where

    out = run(venv / "bin" / "python", demo / "manage.py", "supervisor", "getconfig", cwd=demo)
    assert (out.stderr, out.returncode) == ("", 0)
    # The demo's own programs, the heartbeat app's, and the built-in defaults (package data).
    assert f"command = {venv / 'bin' / 'python'} {demo}/manage.py runserver" in out.stdout
    assert "[program:worker]" in out.stdout
    assert "[program:autoreload]" in out.stdout
    assert "childlogdir = " in out.stdout
