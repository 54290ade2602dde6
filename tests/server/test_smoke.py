"""The smallest end-to-end run: start, status, shutdown."""

from pathlib import Path

import pytest

from tests.utils import Project, make_project, sleeper


@pytest.fixture
def project(tmp_path: Path):
    proj = make_project(
        tmp_path / "proj",
        f"""
        [program:one]
        command={sleeper("one")}
        startsecs=0
        """,
    )
    yield proj
    proj.cleanup()


def test_start_status_shutdown(project: Project) -> None:
    server = project.start()
    project.wait_running("one")
    out, err, code = project.manage("supervisor", "shutdown")
    assert (out.strip(), err, code) == ("Shut down", "", 0)
    assert server.wait(timeout=20) == 0
