"""``export compose``, run for real: dockerd in a network namespace of its own, the
exported demo brought up with docker-compose 1.29.2 (as in ../shared/CONTAINERS.md).

Linux and root only, with ``dockerd`` installed and docker-compose found
(``$DJSUPERVISOR_COMPOSE`` or on PATH): ``.ci/run``'s live job installs both. The
containers run the host's interpreter and venv, bind-mounted read-only into an 11 kB
image, with ``network_mode: host`` inside dockerd's namespace (only ``lo``), so no
traffic leaves 127.0.0.1 and nothing on the host network changes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from tests.utils import REPO, wait_for

yaml = pytest.importorskip("yaml", reason="pip install -e '.[export-test]'")

from tests.export.helpers import export_demo, import_skeleton  # noqa: E402 (helpers needs yaml)

COMPOSE = os.environ.get("DJSUPERVISOR_COMPOSE") or shutil.which("docker-compose")
DOCKER = shutil.which("docker")
#: Set by .ci/run's live job: there, a missing piece fails instead of skipping.
REQUIRED = bool(os.environ.get("DJSUPERVISOR_COMPOSE"))
pytestmark = [
    pytest.mark.skipif(not REQUIRED and condition, reason=reason)
    for condition, reason in (
        (sys.platform != "linux", "dockerd runs on Linux only"),
        (os.geteuid() != 0, "dockerd needs root"),
        (shutil.which("dockerd") is None, "no dockerd (apt docker.io)"),
        (DOCKER is None, "no docker client"),
        (COMPOSE is None, "no docker-compose ($DJSUPERVISOR_COMPOSE)"),
    )
]
IMAGE = "localhost/djsv-hostusr:test"
PORT = 18770  # dockerd's namespace is private: no other listener can hold it

CONF = """\
[program:migrate]
command={migrate}
directory={{{{ PROJECT_DIR }}}}
oneshot=true

[program:web]
command={{{{ PYTHON }}}} {{{{ PROJECT_DIR }}}}/manage.py runserver 127.0.0.1:{port} --noreload
directory={{{{ PROJECT_DIR }}}}
depends_on=migrate:completed
healthcheck=http://127.0.0.1:{port}{path}
healthcheck_interval=1
healthcheck_retries={retries}

[program:worker]
command={{{{ PYTHON }}}} {{{{ PROJECT_DIR }}}}/manage.py heartbeat --interval 1
directory={{{{ PROJECT_DIR }}}}
depends_on=web:healthy
"""
MIGRATE = "{{ PYTHON }} {{ PROJECT_DIR }}/manage.py migrate --noinput"


@dataclass
class Daemon:
    work: Path
    pid: int
    env: dict[str, str]

    def docker(self, *args: str) -> str:
        assert DOCKER is not None
        result = subprocess.run(
            [DOCKER, *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.fixture(scope="module")
def dockerd() -> Iterator[Daemon]:
    # Short paths: containerd's sockets live under the exec root.
    work = Path(tempfile.mkdtemp(prefix="djsv-live-"))
    script = (
        'ip link set lo up && exec dockerd --host "unix://$0/docker.sock" '
        '--data-root "$0/root" --exec-root "$0/exec" --pidfile "$0/docker.pid" '
        "--bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false"
    )
    log = (work / "dockerd.log").open("w")
    proc = subprocess.Popen(
        ["unshare", "--net", "--fork", "sh", "-c", script, str(work)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    env = {**os.environ, "DOCKER_HOST": f"unix://{work}/docker.sock"}
    daemon = Daemon(work, 0, env)
    try:

        def ready() -> bool:
            assert DOCKER is not None
            if proc.poll() is not None:
                raise AssertionError((work / "dockerd.log").read_text())
            info = subprocess.run([DOCKER, "info"], env=env, capture_output=True, timeout=30)
            return info.returncode == 0

        wait_for(ready, 60, "dockerd answering")
        daemon.pid = int((work / "docker.pid").read_text())
        skeleton(daemon)
        yield daemon
    finally:
        with contextlib.suppress(Exception):
            daemon.docker("rmi", "-f", IMAGE)
        # dockerd and its containerd are in the session unshare started: stop them all.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything left in that session
        log.close()
        subprocess.run(["umount", str(work / "exec" / "netns" / "default")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def skeleton(daemon: Daemon) -> None:
    """An image with only the ``/usr`` symlinks: the host's files are mounted at run time."""
    assert DOCKER is not None
    import_skeleton(daemon.work / "skel", [DOCKER, "import", "-c"], IMAGE, env=daemon.env)


@dataclass
class Up:
    returncode: int
    output: str
    containers: dict[str, dict[str, object]]


def bring_up(daemon: Daemon, tmp_path: Path, migrate: str, path: str, retries: int) -> Up:
    """Export the demo with this config and ``docker-compose up -d`` it; then take it down."""
    site = tmp_path / "site"
    conf = CONF.format(migrate=migrate, port=PORT, path=path, retries=retries)
    document = yaml.safe_load(export_demo(site, conf, "compose", IMAGE))
    assert document.pop("name") == "site"  # compose 1.29.2 predates name: (-p instead)
    (site / "compose.yaml").write_text(yaml.safe_dump(document))
    mounts = sorted({"/usr", sys.base_prefix, sys.prefix, str(REPO)})
    test_only = {
        "network_mode": "host",
        "extra_hosts": [f"{name}:127.0.0.1" for name in document["services"]],
        "volumes": [f"{m}:{m}:ro" for m in mounts] + [f"{site}:{site}"],
    }
    override = {"services": {name: test_only for name in document["services"]}}
    (site / "test-override.yaml").write_text(yaml.safe_dump(override))
    assert COMPOSE is not None
    compose = [COMPOSE, "-p", "djsv", "-f", "compose.yaml", "-f", "test-override.yaml"]
    try:
        up = subprocess.run(
            [*compose, "up", "-d"], cwd=site, env=daemon.env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        ids = daemon.docker("ps", "-aq").split()
        found = json.loads(daemon.docker("inspect", *ids)) if ids else []
        containers = {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in found}
        if up.returncode == 0:
            # up -d does not wait for the health of a service nothing depends on.
            def worker_running() -> bool:
                state = json.loads(daemon.docker("inspect", "djsv_worker_1"))[0]["State"]
                return bool(state["Running"])

            wait_for(worker_running, 60, "worker running")
            probe = subprocess.run(
                ["nsenter", f"--net=/proc/{daemon.pid}/ns/net", sys.executable, "-c",
                 f"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{PORT}/').read())"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert "the web program is up" in probe.stdout, probe.stderr
        networks = daemon.docker("network", "ls", "--format", "{{.Name}}").split()
        assert sorted(networks) == ["host", "none"]
        return Up(up.returncode, up.stdout + up.stderr, containers)
    finally:
        subprocess.run(
            [*compose, "down", "-v", "-t", "2"], cwd=site, env=daemon.env, capture_output=True,
            timeout=120,
        )  # fmt: skip


def when(stamp: object) -> datetime:
    """Docker's RFC 3339 time with nanoseconds, to microseconds."""
    text = str(stamp).replace("Z", "")
    head, _, fraction = text.partition(".")
    return datetime.fromisoformat(f"{head}.{(fraction + '000000')[:6]}")


def test_exported_demo_runs_in_order_and_gated_by_health(dockerd: Daemon, tmp_path: Path) -> None:
    up = bring_up(dockerd, tmp_path, MIGRATE, "/", retries=60)
    assert up.returncode == 0, up.output
    migrate, web = up.containers["migrate"]["State"], up.containers["web"]["State"]
    worker = up.containers["worker"]["State"]
    assert isinstance(migrate, dict) and isinstance(web, dict) and isinstance(worker, dict)
    assert migrate["ExitCode"] == 0
    assert when(migrate["FinishedAt"]) <= when(web["StartedAt"])
    healthy = [e for e in web["Health"]["Log"] if e["ExitCode"] == 0]
    assert healthy, web["Health"]
    assert when(healthy[0]["End"]) <= when(worker["StartedAt"])


def test_failing_oneshot_blocks_its_dependents(dockerd: Daemon, tmp_path: Path) -> None:
    up = bring_up(dockerd, tmp_path, "{{ PYTHON }} -c 'raise SystemExit(3)'", "/", retries=60)
    assert up.returncode == 1
    assert "exited with code 3" in up.output
    assert set(up.containers) == {"migrate"}  # web and worker never created


def test_unhealthy_service_blocks_its_dependents(dockerd: Daemon, tmp_path: Path) -> None:
    up = bring_up(dockerd, tmp_path, MIGRATE, "/no-such-page/", retries=2)
    assert up.returncode == 1
    assert "is unhealthy" in up.output
    assert set(up.containers) == {"migrate", "web"}  # worker never created
