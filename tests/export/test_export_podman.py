"""``export kubernetes``, started for real where podman is: ``podman kube play`` of the
exported ConfigMap and Deployments runs the demo's web program, and the URL of its
readiness probe answers (see ../shared/CONTAINERS.md, §3.4 and §5.2).

podman 4.3.1 runs Deployments, Pods and ConfigMaps only: Jobs, Services, probes and
init containers are left to the schema checks (test_export_schemas.py). Linux and root
only; ``.ci/run``'s live job installs podman and sets ``DJSUPERVISOR_PODMAN=1``, which
turns a missing piece into a failure instead of a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.utils import REPO, wait_for

yaml = pytest.importorskip("yaml", reason="pip install -e '.[export-test]'")

from tests.export.helpers import export_demo, import_skeleton  # noqa: E402 (helpers needs yaml)

PODMAN = shutil.which("podman")
REQUIRED = os.environ.get("DJSUPERVISOR_PODMAN") == "1"
pytestmark = [
    pytest.mark.skipif(not REQUIRED and condition, reason=reason)
    for condition, reason in (
        (sys.platform != "linux", "podman kube play runs on Linux only here"),
        (os.geteuid() != 0, "podman needs root here"),
        (PODMAN is None, "no podman (apt podman runc)"),
    )
]
IMAGE = "localhost/djsv-hostusr:test"
#: podman 4.3.1 on this VM: crun cannot run (hybrid cgroups, rlimits), and podman must
#: never pick its own network (it would add a bridge and NAT rules to the host).
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "host"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


@pytest.fixture
def podman() -> Iterator[list[str]]:
    work = Path(tempfile.mkdtemp(prefix="djsv-podman-"))
    (work / "containers.conf").write_text(CONTAINERS_CONF)
    os.environ["CONTAINERS_CONF"] = str(work / "containers.conf")
    assert PODMAN is not None
    command = [PODMAN, "--root", str(work / "store"), "--runroot", str(work / "run")]
    try:
        yield command
    finally:
        for args in (["pod", "rm", "-af", "-t", "0"], ["rm", "-af", "-t", "0"], ["rmi", "-af"]):
            subprocess.run([*command, *args], capture_output=True, timeout=120)
        del os.environ["CONTAINERS_CONF"]
        shutil.rmtree(work, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def host_volumes(documents: list[dict[str, Any]], paths: list[str]) -> None:
    """Test only: mount the host's interpreter, venv and project, as the image would hold."""
    for document in documents:
        if document["kind"] != "Deployment":
            continue
        spec = document["spec"]["template"]["spec"]
        spec["volumes"] = [
            {"name": f"host-{i}", "hostPath": {"path": path}} for i, path in enumerate(paths)
        ]
        for container in spec["containers"]:
            # podman turns containerPort into a port mapping, which host networking
            # refuses, and its probes need systemd timers: the test probes itself.
            container.pop("ports", None)
            container.pop("readinessProbe", None)
            container.pop("livenessProbe", None)
            container["volumeMounts"] = [
                {"name": f"host-{i}", "mountPath": path} for i, path in enumerate(paths)
            ]


def test_kube_play_runs_the_exported_web_program(podman: list[str], tmp_path: Path) -> None:
    import_skeleton(tmp_path / "skel", [*podman, "import", "--change"], IMAGE)

    port = free_port()
    site = tmp_path / "site"
    conf = (
        "[program:web]\n"
        f"command={{{{ PYTHON }}}} {{{{ PROJECT_DIR }}}}/manage.py runserver 127.0.0.1:{port}"
        " --noreload\n"
        "directory={{ PROJECT_DIR }}\n"
        f"healthcheck=http://127.0.0.1:{port}/\n"
    )
    documents = [
        d
        for d in yaml.safe_load_all(export_demo(site, conf, "kubernetes", IMAGE))
        if d["kind"] in ("ConfigMap", "Deployment")  # what podman 4.3.1 runs
    ]
    assert {d["metadata"]["name"] for d in documents} >= {"site-env", "site-web"}
    web = next(d for d in documents if d["metadata"]["name"] == "site-web")
    probe = web["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert probe["port"] == "http"
    host_volumes(documents, sorted({"/usr", sys.base_prefix, sys.prefix, str(REPO), str(site)}))
    manifest = tmp_path / "kube.yaml"
    manifest.write_text(yaml.safe_dump_all(documents))
    try:
        played = subprocess.run(
            [*podman, "kube", "play", "--network", "host", str(manifest)],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert played.returncode == 0, played.stderr

        def answers() -> bool:
            url = f"http://127.0.0.1:{port}{probe['path']}"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
                return b"the web program is up" in answer.read()
            return False

        wait_for(answers, 60, "the web program's readiness URL")
        # The ConfigMap's variables reached the program (envFrom).
        names = subprocess.run(
            [*podman, "ps", "--format", "{{.Names}}"], capture_output=True, text=True, timeout=60
        ).stdout.split()
        container = next(n for n in names if n.endswith("-web"))
        printed = subprocess.run(
            [*podman, "exec", container, sys.executable, "-c",
             "import os; print(os.environ['DJANGO_SETTINGS_MODULE'])"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert printed.stdout == "demo.settings\n", printed.stderr
    finally:
        subprocess.run([*podman, "kube", "down", str(manifest)], capture_output=True, timeout=120)
    assert not Path("/sys/class/net/podman0").exists()  # no bridge on the host
