"""``export compose|kubernetes``: one test per row of the README's mapping table.

The Compose health check commands are run for real against a live server; the
Kubernetes objects are checked here field by field (schemas: test_export_schemas.py).
"""

from __future__ import annotations

import http.server
import pwd
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("yaml", reason="export needs PyYAML: pip install -e '.[export-test]'")

from tests.export.helpers import (
    CONF,
    compose,
    kubernetes,
    objects,
    pod_template,
    semantic_problems,
)
from tests.utils import Project, make_project, site_settings

PYTHON = sys.executable
NOBODY = pwd.getpwnam("nobody").pw_uid


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    # DEBUG: the autoreload program would run, and must not be exported.
    with site_settings(tmp_path, SUPERVISOR_ENV_FILES=[], DEBUG=True) as directory:
        (directory / "supervisord.conf").write_text(CONF)
        yield directory


@pytest.fixture
def k8s(site: Path) -> tuple[dict[tuple[str, str], dict[str, Any]], str]:
    documents, err = kubernetes()
    assert semantic_problems(documents) == []
    return objects(documents), err


def container(found: dict[tuple[str, str], dict[str, Any]], kind: str, name: str) -> Any:
    return pod_template(found[(kind, name)])["spec"]["containers"][0]


def test_program_is_a_service_and_a_deployment(site: Path, k8s: Any) -> None:
    services, _ = compose()
    assert services["name"] == "site"
    assert list(services["services"]) == [
        "web", "worker", "shard-0", "shard-1", "cache", "ping", "migrate",
    ]  # fmt: skip
    assert services["services"]["web"]["image"] == "shop:1"
    found, _ = k8s
    web = found[("Deployment", "site-web")]
    labels = {
        "app.kubernetes.io/name": "site",
        "app.kubernetes.io/instance": "site",
        "app.kubernetes.io/component": "web",
    }
    assert web["metadata"]["labels"] == labels
    assert web["spec"]["selector"]["matchLabels"] == labels
    assert container(found, "Deployment", "site-web")["image"] == "shop:1"
    assert "autoreload" not in str(services) + str(found)


def test_command_is_an_exec_form_list(site: Path, k8s: Any) -> None:
    argv = [PYTHON, "manage.py", "runserver", "0.0.0.0:8000", "--noreload", "a b"]
    services, _ = compose()
    assert services["services"]["web"]["command"] == argv
    assert container(k8s[0], "Deployment", "site-web")["command"] == argv


def test_directory_is_the_working_dir(site: Path, k8s: Any) -> None:
    services, _ = compose()
    assert services["services"]["web"]["working_dir"] == str(site)
    # No directory=: supervisord runs the program in the project directory.
    assert services["services"]["ping"]["working_dir"] == str(site)
    assert container(k8s[0], "Deployment", "site-web")["workingDir"] == str(site)


def test_environment(site: Path, k8s: Any) -> None:
    services, _ = compose()
    assert services["services"]["web"]["environment"] == {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "SHARED": "yes",
        "API_TOKEN": "t0k",
        "WEB_ONLY": "1",
        "DB_PASSWORD": "pw",
    }
    found, _ = k8s
    # Shared by every program: the ConfigMap, secret-looking names the Secret.
    assert found[("ConfigMap", "site-env")]["data"] == {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "SHARED": "yes",
    }
    assert found[("Secret", "site-secret")]["stringData"] == {
        "API_TOKEN": "t0k",
        "web.DB_PASSWORD": "pw",
    }
    web = container(found, "Deployment", "site-web")
    assert web["envFrom"] == [
        {"configMapRef": {"name": "site-env"}},
        {"secretRef": {"name": "site-secret"}},
    ]
    assert web["env"] == [
        {"name": "WEB_ONLY", "value": "1"},
        {
            "name": "DB_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "site-secret", "key": "web.DB_PASSWORD"}},
        },
    ]
    assert "env" not in container(found, "Deployment", "site-cache")


def test_secret_option_moves_a_variable_to_the_secret(site: Path) -> None:
    found = objects(kubernetes("--secret", "SHARED")[0])
    assert "SHARED" in found[("Secret", "site-secret")]["stringData"]
    assert "SHARED" not in found[("ConfigMap", "site-env")]["data"]


def test_identical_numprocs_are_replicas(site: Path, k8s: Any) -> None:
    services, _ = compose()
    assert services["services"]["worker"]["deploy"] == {"replicas": 3}
    assert k8s[0][("Deployment", "site-worker")]["spec"]["replicas"] == 3


def test_numprocs_differing_by_process_num_are_separate(site: Path, k8s: Any) -> None:
    services, _ = compose()
    assert services["services"]["shard-0"]["command"] == ["sleep", "100"]
    assert services["services"]["shard-1"]["command"] == ["sleep", "101"]
    assert "deploy" not in services["services"]["shard-0"]
    found, _ = k8s
    assert container(found, "Deployment", "site-shard-1")["command"] == ["sleep", "101"]
    assert found[("Deployment", "site-shard-0")]["spec"]["replicas"] == 1


def test_autorestart(site: Path, k8s: Any) -> None:
    services, _ = compose()
    restart = {name: s["restart"] for name, s in services["services"].items()}
    assert (restart["web"], restart["worker"], restart["ping"]) == ("always", "on-failure", "no")
    found, k8s_err = k8s
    assert ("Deployment", "site-worker") in found
    ping = found[("Job", "site-ping")]
    assert ping["spec"]["backoffLimit"] == 0
    assert pod_template(ping)["spec"]["restartPolicy"] == "Never"
    assert (
        "warning: export kubernetes: [program:worker] autorestart=unexpected: "
        "a Deployment restarts the program after any exit\n"
    ) in k8s_err


def test_oneshot_is_a_job(site: Path, k8s: Any) -> None:
    services, _ = compose()
    assert services["services"]["migrate"]["restart"] == "no"
    migrate = k8s[0][("Job", "site-migrate")]
    assert migrate["spec"]["backoffLimit"] == 2  # startretries
    assert pod_template(migrate)["spec"]["restartPolicy"] == "Never"


def test_depends_on(site: Path, k8s: Any) -> None:
    services, _ = compose()
    assert services["services"]["web"]["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"}
    }
    assert services["services"]["worker"]["depends_on"] == {
        "web": {"condition": "service_healthy"},
        "cache": {"condition": "service_started"},
    }
    found, _ = k8s
    web = pod_template(found[("Deployment", "site-web")])["spec"]
    assert web["serviceAccountName"] == "site-waiter"
    [wait] = web["initContainers"]
    assert wait["name"] == "wait-migrate"
    assert wait["command"][:2] == [PYTHON, "-c"]
    assert wait["command"][3:] == ["job", "site-migrate", "completed"]
    worker = pod_template(found[("Deployment", "site-worker")])["spec"]["initContainers"]
    assert [w["command"][3:] for w in worker] == [
        ["deployment", "site-web", "healthy"],
        ["deployment", "site-cache", "started"],
    ]
    role = found[("Role", "site-waiter")]
    assert {(r["apiGroups"][0], r["resources"][0]) for r in role["rules"]} == {
        ("apps", "deployments"),
        ("batch", "jobs"),
    }
    binding = found[("RoleBinding", "site-waiter")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "site-waiter"}]
    assert binding["roleRef"]["name"] == "site-waiter"


def test_wait_script_compiles(site: Path) -> None:
    from djsupervisor.export.kubernetes import WAIT_SCRIPT

    compile(WAIT_SCRIPT, "wait", "exec")


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health/" else 500)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def run_test(test: list[str]) -> int:
    assert test[0] in ("CMD", "CMD-SHELL")
    argv = test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]
    return subprocess.run(argv, timeout=30, capture_output=True).returncode


def test_healthcheck(site: Path, k8s: Any) -> None:
    services, _ = compose()
    web = services["services"]["web"]["healthcheck"]
    assert {k: v for k, v in web.items() if k != "test"} == {
        "interval": "1.5s",
        "timeout": "3s",
        "retries": 5,
        "start_period": "4s",
    }
    assert services["services"]["ping"]["healthcheck"]["test"] == ["CMD-SHELL", "test -d /"]
    assert run_test(services["services"]["ping"]["healthcheck"]["test"]) == 0
    found, _ = k8s
    probe = container(found, "Deployment", "site-web")["readinessProbe"]
    assert probe == {
        "httpGet": {"path": "/health/", "port": "http", "scheme": "HTTP"},
        "periodSeconds": 2,
        "timeoutSeconds": 3,
        "failureThreshold": 5,
        "initialDelaySeconds": 4,
    }
    # healthcheck_restart=true: the kubelet restarts it when the check fails.
    assert container(found, "Deployment", "site-web")["livenessProbe"] == probe
    cache = container(found, "Deployment", "site-cache")
    assert cache["readinessProbe"]["tcpSocket"] == {"port": "health"}
    assert "livenessProbe" not in cache
    ping = container(found, "Job", "site-ping")["readinessProbe"]
    assert ping["exec"] == {"command": ["/bin/sh", "-c", "test -d /"]}


def test_compose_health_tests_need_no_curl(tmp_path: Path, busy_port: int) -> None:
    """The exported tests, run as the container would run them, against real servers."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        free_port = closed.getsockname()[1]
    conf = f"""\
[program:up]
command=sleep 1
healthcheck=http://127.0.0.1:{server.server_port}/health/
[program:failing]
command=sleep 1
healthcheck=http://127.0.0.1:{server.server_port}/broken/
[program:tcp]
command=sleep 1
healthcheck=tcp://127.0.0.1:{busy_port}
[program:down]
command=sleep 1
healthcheck=tcp://127.0.0.1:{free_port}
"""
    try:
        with site_settings(tmp_path, SUPERVISOR_ENV_FILES=[]) as directory:
            (directory / "supervisord.conf").write_text(conf)
            services = compose()[0]["services"]
        codes = {name: run_test(s["healthcheck"]["test"]) for name, s in services.items()}
    finally:
        server.shutdown()
        server.server_close()
    assert codes["up"] == codes["tcp"] == 0
    assert codes["failing"] != 0 and codes["down"] != 0


def test_health_check_port_is_a_service(site: Path, k8s: Any) -> None:
    found, err = k8s
    assert found[("Service", "site-web")]["spec"] == {
        "selector": {
            "app.kubernetes.io/name": "site",
            "app.kubernetes.io/instance": "site",
            "app.kubernetes.io/component": "web",
        },
        "ports": [{"name": "http", "port": 8000, "targetPort": "http"}],
    }
    assert found[("Service", "site-cache")]["spec"]["ports"] == [
        {"name": "health", "port": 6379, "targetPort": "health"}
    ]
    assert ("Service", "site-ping") not in found  # cmd: no port
    assert "warning: export kubernetes: [program:web] healthcheck on 127.0.0.1: the kubelet" in err


def test_stop_signal_and_grace(site: Path, k8s: Any) -> None:
    services, _ = compose()
    web = services["services"]["web"]
    assert (web["stop_signal"], web["stop_grace_period"]) == ("SIGINT", "20s")
    found, err = k8s
    assert (
        pod_template(found[("Deployment", "site-web")])["spec"]["terminationGracePeriodSeconds"]
        == 20
    )
    assert (
        "warning: export kubernetes: [program:web] stopsignal=INT: "
        "Kubernetes always sends SIGTERM\n"
    ) in err
    assert "[program:cache] stopsignal" not in err


def test_user_is_a_uid(site: Path, k8s: Any) -> None:
    services, _ = compose()
    assert services["services"]["web"]["user"] == str(NOBODY)
    assert "user" not in services["services"]["cache"]
    web = container(k8s[0], "Deployment", "site-web")
    assert web["securityContext"] == {"runAsUser": NOBODY}


def test_autostart_false(site: Path, k8s: Any) -> None:
    services, _ = compose()
    assert services["services"]["cache"]["profiles"] == ["manual"]
    assert "profiles" not in services["services"]["web"]
    assert k8s[0][("Deployment", "site-cache")]["spec"]["replicas"] == 0
    found = objects(kubernetes("-n", "migrate")[0])
    assert found[("Job", "site-migrate")]["spec"]["suspend"] is True


def test_essential_and_untranslatable_options_are_warnings(site: Path, k8s: Any) -> None:
    _, err = compose()
    lines = err.splitlines()
    assert (
        "warning: export compose: [program:web] essential=true: run "
        "'docker compose up --exit-code-from web' to stop everything when it exits"
    ) in lines
    assert (
        "warning: export compose: [program:worker] priority=10: no equivalent (use depends_on)"
        in lines
    )
    assert (
        f"warning: export compose: [program:worker] stdout_logfile={site}/worker.log: "
        "containers log to their output"
    ) in lines
    assert all(line.startswith("warning: export compose: ") for line in lines)
    _, k8s_err = k8s
    assert (
        "warning: export kubernetes: [program:web] essential=true: no equivalent; "
        "the others keep running"
    ) in k8s_err.splitlines()


def test_options_shape_the_export(site: Path) -> None:
    services, _ = compose("-x", "ping")
    assert "ping" not in services["services"]
    documents, _ = kubernetes("-x", "ping", "--namespace", "shop", "--name", "Shop_Front")
    found = objects(documents)
    assert ("Job", "shop-front-ping") not in found
    assert {d["metadata"]["namespace"] for d in documents} == {"shop"}
    assert found[("RoleBinding", "shop-front-waiter")]["subjects"][0]["namespace"] == "shop"


def test_output_file(site: Path, tmp_path: Path) -> None:
    from tests.export.helpers import run_export

    target = tmp_path / "k8s.yaml"
    out, _ = run_export("kubernetes", "--image", "shop:1", "--output", str(target))
    assert out == f"wrote {target}\n"
    assert target.read_text().count("\n---\n") == len(kubernetes()[0]) - 1


# Bad input: one line naming the culprit, a non-zero exit, no traceback.

BAD_NAME_CONF = """\
[program:web.v2]
command=sleep 1000
"""


@pytest.mark.parametrize(
    ("conf", "args", "code", "line"),
    [
        (
            CONF,
            ["export", "compose"],
            2,
            "CommandError: export: the following arguments are required: --image",
        ),
        (
            CONF,
            ["-x", "nosuch", "export", "kubernetes", "--image", "i"],
            1,
            "CommandError: --exclude nosuch: no program named 'nosuch' (programs: "
            "autoreload, cache, migrate, ping, shard, web, worker)",
        ),
        (
            BAD_NAME_CONF,
            ["export", "kubernetes", "--image", "i"],
            2,
            "CommandError: export kubernetes: [program:web.v2]: 'testproj-web.v2' is not a "
            "valid Kubernetes name (lowercase letters, digits and '-', at most 63 "
            "characters); pass a shorter --name or rename the program",
        ),
        (
            BAD_NAME_CONF,
            ["export", "kubernetes", "--image", "i", "--name", "x" * 60],
            2,
            f"CommandError: export kubernetes: [program:web.v2]: '{'x' * 60}-web.v2' is not "
            "a valid Kubernetes name (lowercase letters, digits and '-', at most 63 "
            "characters); pass a shorter --name or rename the program",
        ),
        (
            CONF,
            ["export", "compose", "--image", "i", "--name", "Shop"],
            2,
            "CommandError: export compose: 'Shop' cannot name a Compose project; pass --name "
            "with lowercase letters, digits, '_' or '-'",
        ),
    ],
)
def test_bad_input_is_one_line(
    projects: list[Project], tmp_path: Path, conf: str, args: list[str], code: int, line: str
) -> None:
    project = make_project(tmp_path / "testproj", conf)
    projects.append(project)
    out, err, returncode = project.manage("supervisor", *args)
    assert (out, err, returncode) == ("", line + "\n", code)


def test_missing_pyyaml_names_the_extra(projects: list[Project], tmp_path: Path) -> None:
    project = make_project(tmp_path / "testproj", CONF)
    projects.append(project)
    # PyYAML made unimportable in that process only.
    project.write("sitecustomize.py", "import sys\nsys.modules['yaml'] = None\n")
    out, err, returncode = project.manage("supervisor", "export", "compose", "--image", "i")
    assert (out, err, returncode) == (
        "",
        "CommandError: export: PyYAML is not installed; install djsupervisor[export]\n",
        1,
    )


def test_groups_and_event_listeners_are_warnings(tmp_path: Path) -> None:
    conf = """\
[program:a]
command=sleep 1%(process_num)d
process_name=%(program_name)s_%(process_num)d
numprocs=2
priority=5
[program:b]
command=sleep 1000
[group:both]
programs=a,b
[eventlistener:listener]
command=/bin/cat
events=TICK_5
"""
    with site_settings(tmp_path, SUPERVISOR_ENV_FILES=[]) as directory:
        (directory / "supervisord.conf").write_text(conf)
        services, err = compose()
    assert list(services["services"]) == ["a-0", "a-1", "b"]
    assert err.splitlines() == [
        "warning: export compose: [eventlistener:listener]: event listeners and FastCGI "
        "programs are not exported",
        "warning: export compose: [group:both]: groups have no equivalent; their programs "
        "are exported",
        # Once, though both processes of a carry it.
        "warning: export compose: [program:a] priority=5: no equivalent (use depends_on)",
    ]
