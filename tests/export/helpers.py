"""Shared by the Compose/Kubernetes export tests: a config using every mapped option,
running the exporters in-process, and the checks the schemas cannot make."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from django.core.management import call_command

from tests.utils import REPO

#: Every row of the README's mapping table, once.
CONF = """\
[supervisord]
environment=SHARED="yes",API_TOKEN="t0k"

[program:web]
command={{ PYTHON }} manage.py runserver 0.0.0.0:8000 --noreload "a b"
directory={{ PROJECT_DIR }}
environment=WEB_ONLY="1",DB_PASSWORD="pw"
healthcheck=http://127.0.0.1:8000/health/
healthcheck_interval=1.5
healthcheck_timeout=3
healthcheck_retries=5
healthcheck_start_period=4
healthcheck_restart=true
depends_on=migrate:completed
stopsignal=INT
stopwaitsecs=20
user=nobody
essential=true
autorestart=true

[program:worker]
command=sleep 1000
process_name=%(program_name)s_%(process_num)d
numprocs=3
autorestart=unexpected
depends_on=web:healthy,cache
priority=10
stdout_logfile={{ PROJECT_DIR }}/worker.log

[program:shard]
command=sleep 10%(process_num)d
process_name=%(program_name)s_%(process_num)d
numprocs=2

[program:cache]
command=sleep 1000
healthcheck=tcp://127.0.0.1:6379
autostart=false

[program:ping]
command=sleep 1
autorestart=false
healthcheck=cmd:test -d /

[program:migrate]
command={{ PYTHON }} manage.py migrate
oneshot=true
startretries=2
"""

_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PORT_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def run_export(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("supervisor", "export", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def export_demo(site: Path, conf: str, kind: str, image: str) -> str:
    """Copy the demo project to ``site`` with ``conf`` as its supervisord.conf and export it
    with its own ``manage.py`` (a separate process, as a user would): the exporter's stdout."""
    shutil.copytree(REPO / "tests" / "demo", site, ignore=shutil.ignore_patterns("*.sqlite3"))
    (site / "supervisord.conf").write_text(conf)
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(REPO)
    exported = subprocess.run(
        [sys.executable, "manage.py", "supervisor", "export", kind, "--image", image],
        cwd=site,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert exported.returncode == 0, exported.stderr
    return exported.stdout


def import_skeleton(root: Path, importer: Sequence[str], image: str, **run: Any) -> None:
    """Import, as ``image``, an image with only the ``/usr`` symlinks: the host's files are
    mounted at run time. ``importer`` is ``docker import -c`` or ``podman import --change``."""
    for folder in ("usr", "etc", "tmp", "proc", "sys", "dev"):
        (root / folder).mkdir(parents=True)
    (root / "tmp").chmod(0o1777)
    for link in ("bin", "lib", "lib64", "sbin"):
        (root / link).symlink_to(f"usr/{link}")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    with subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE) as tar:
        subprocess.run(
            [*importer, "ENV PATH=/usr/local/bin:/usr/bin:/bin", "-", image],
            stdin=tar.stdout,
            check=True,
            capture_output=True,
            timeout=120,
            **run,
        )
    assert tar.returncode == 0


def compose(*args: str) -> tuple[dict[str, Any], str]:
    out, err = run_export("compose", "--image", "shop:1", *args)
    loaded = yaml.safe_load(out)
    assert isinstance(loaded, dict)
    return loaded, err


def kubernetes(*args: str) -> tuple[list[dict[str, Any]], str]:
    out, err = run_export("kubernetes", "--image", "shop:1", *args)
    return list(yaml.safe_load_all(out)), err


def objects(documents: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in documents}


def pod_template(document: dict[str, Any]) -> dict[str, Any]:
    template = document["spec"]["template"]
    assert isinstance(template, dict)
    return template


def semantic_problems(documents: list[dict[str, Any]]) -> list[str]:
    """What an API server would refuse and the JSON schemas let through."""
    problems = []
    found = objects(documents)
    for (kind, name), document in found.items():
        if len(name) > 63 or not _DNS_LABEL_RE.match(name):
            problems.append(f"{kind} {name}: not a DNS-1123 label")
        for value in document["metadata"].get("labels", {}).values():
            if len(value) > 63:
                problems.append(f"{kind} {name}: label value {value!r} too long")
        if kind == "Service":
            selector = document["spec"]["selector"].items()
            backends = [
                d
                for d in documents
                if d["kind"] in ("Deployment", "Job")
                and selector <= pod_template(d)["metadata"]["labels"].items()
            ]
            if not backends:
                problems.append(f"Service {name}: its selector matches no pod template")
            for port in document["spec"]["ports"]:
                named = [
                    p["name"]
                    for b in backends
                    for c in pod_template(b)["spec"]["containers"]
                    for p in c.get("ports", [])
                ]
                if port["targetPort"] not in named:
                    problems.append(f"Service {name}: targetPort {port['targetPort']} unnamed")
        if kind not in ("Deployment", "Job"):
            continue
        template = pod_template(document)
        labels = template["metadata"]["labels"]
        if kind == "Deployment":
            selector = document["spec"]["selector"]["matchLabels"]
            if not selector.items() <= labels.items():
                problems.append(f"Deployment {name}: selector does not match the pod labels")
        elif template["spec"].get("restartPolicy") not in ("Never", "OnFailure"):
            problems.append(f"Job {name}: restartPolicy must be Never or OnFailure")
        spec = template["spec"]
        containers = spec["containers"] + spec.get("initContainers", [])
        container_names = [c["name"] for c in containers]
        if len(set(container_names)) != len(container_names):
            problems.append(f"{kind} {name}: container names repeat")
        account = spec.get("serviceAccountName")
        if account is not None and ("ServiceAccount", account) not in found:
            problems.append(f"{kind} {name}: no ServiceAccount {account}")
        for container in containers:
            if len(container["name"]) > 63 or not _DNS_LABEL_RE.match(container["name"]):
                problems.append(f"{kind} {name}: container name {container['name']!r}")
            ports = {p["name"] for p in container.get("ports", [])}
            for port in ports:
                if len(port) > 15 or not _PORT_NAME_RE.match(port):
                    problems.append(f"{kind} {name}: port name {port!r}")
            for key in ("readinessProbe", "livenessProbe"):
                probe = container.get(key, {})
                for action in ("httpGet", "tcpSocket"):
                    if action in probe and probe[action]["port"] not in ports:
                        problems.append(f"{kind} {name}: {key} port is not a container port")
            for variable in container.get("env", []):
                if not _ENV_NAME_RE.match(variable["name"]):
                    problems.append(f"{kind} {name}: env name {variable['name']!r}")
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["key"] not in found[("Secret", ref["name"])]["stringData"]:
                    problems.append(f"{kind} {name}: no key {ref['key']} in {ref['name']}")
            for source in container.get("envFrom", []):
                for ref_kind, object_kind in (
                    ("configMapRef", "ConfigMap"),
                    ("secretRef", "Secret"),
                ):
                    if ref_kind in source and (object_kind, source[ref_kind]["name"]) not in found:
                        problems.append(f"{kind} {name}: no {object_kind} {source[ref_kind]}")
    return problems
