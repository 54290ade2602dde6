"""``export kubernetes``: the programs as Kubernetes objects, one multi-document stream.

Long-running programs become Deployments, oneshot and ``autorestart=false`` programs
Jobs. ``depends_on`` becomes an init container that asks the API server (with the
ServiceAccount and Role emitted here) until the dependency is ready or complete.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from . import UsageError
from .model import SECRET_WORDS, Service, python

#: DNS-1123 label: Service names, container names, label values we make.
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")

#: The init container's wait: polls the API server for the dependency's status.
WAIT_SCRIPT = """\
import json, os, ssl, sys, time, urllib.request
kind, name, condition = sys.argv[1:4]
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
namespace = open(sa + "/namespace").read().strip()
token = open(sa + "/token").read().strip()
context = ssl.create_default_context(cafile=sa + "/ca.crt")
env = os.environ
api = "https://%s:%s" % (env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"])
path = {"deployment": "apps/v1/namespaces/%s/deployments/", "job": "batch/v1/namespaces/%s/jobs/"}
url = api + "/apis/" + path[kind] % namespace + name
while True:
    request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    try:
        answer = urllib.request.urlopen(request, context=context, timeout=10)
        status = json.load(answer).get("status") or {}
    except OSError as error:
        print("waiting for %s %s: %s" % (kind, name, error), flush=True)
        status = {}
    if condition == "completed":
        if status.get("succeeded"):
            sys.exit(0)
        conditions = status.get("conditions") or []
        if any(c.get("type") == "Failed" and c.get("status") == "True" for c in conditions):
            sys.exit("%s %s failed" % (kind, name))
    elif status.get("readyReplicas") or status.get("ready") or status.get("succeeded"):
        sys.exit(0)
    time.sleep(2)
"""


def k8s_name(text: str) -> str:
    """A program name as Kubernetes spells names: lowercase, '_' as '-'."""
    return text.lower().replace("_", "-")


def checked(name: str, what: str) -> str:
    if len(name) > 63 or not _DNS_LABEL_RE.match(name):
        raise UsageError(
            f"export kubernetes: {what}: {name!r} is not a valid Kubernetes name "
            "(lowercase letters, digits and '-', at most 63 characters); pass a shorter "
            "--name or rename the program"
        )
    return name


def is_job(service: Service) -> bool:
    return service.oneshot or service.restart == "no"


def is_secret(variable: str, extra: Sequence[str]) -> bool:
    return variable in extra or any(word in variable.upper() for word in SECRET_WORDS)


def seconds(value: float, minimum: int = 1) -> int:
    return max(minimum, math.ceil(value))


def probe(service: Service) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The readiness probe and the container ports it needs."""
    check = service.rules.healthcheck
    if check is None:
        return None
    ports: list[dict[str, Any]] = []
    spec: dict[str, Any]
    if check.kind == "cmd":
        spec = {"exec": {"command": ["/bin/sh", "-c", check.command]}}
    else:
        port_name = "health" if check.kind == "tcp" else check.kind
        ports = [{"name": port_name, "containerPort": check.port, "protocol": "TCP"}]
        if check.kind == "tcp":
            spec = {"tcpSocket": {"port": port_name}}
        else:
            scheme = check.kind.upper()
            spec = {"httpGet": {"path": check.path, "port": port_name, "scheme": scheme}}
        if check.host in _LOOPBACK:
            service.warnings.append(
                f"healthcheck on {check.host}: the kubelet and Services reach the pod's "
                "IP address, so the program must listen on 0.0.0.0"
            )
    spec.update(
        periodSeconds=seconds(check.interval),
        timeoutSeconds=seconds(check.timeout),
        failureThreshold=check.retries,
        initialDelaySeconds=seconds(check.start_period, 0),
    )
    return spec, ports


class Exporter:
    def __init__(
        self,
        made: Sequence[Service],
        name: str,
        image: str,
        namespace: str | None,
        secrets: Sequence[str],
    ) -> None:
        self.made = made
        self.name = checked(k8s_name(name), "--name")
        if namespace is not None:
            checked(namespace, "--namespace")
        self.image = image
        self.namespace = namespace
        self.secrets = secrets
        self.names = {
            s.name: checked(f"{self.name}-{k8s_name(s.name)}", f"[program:{s.program}]")
            for s in made
        }
        self.kinds = {s.name: "job" if is_job(s) else "deployment" for s in made}
        # The environment every program shares goes to one ConfigMap (and Secret).
        common = dict(made[0].environment) if made else {}
        for service in made[1:]:
            common = {k: v for k, v in common.items() if service.environment.get(k) == v}
        self.common = common
        self.configmap = {k: v for k, v in common.items() if not is_secret(k, secrets)}
        self.secret = {k: v for k, v in common.items() if is_secret(k, secrets)}
        for service in made:
            for key, value in service.environment.items():
                if key not in common and is_secret(key, secrets):
                    self.secret[f"{k8s_name(service.name)}.{key}"] = value

    def metadata(self, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if self.namespace:
            meta["namespace"] = self.namespace
        meta["labels"] = labels or self.labels()
        return meta

    def labels(self, service: Service | None = None) -> dict[str, str]:
        labels = {
            "app.kubernetes.io/name": self.name,
            "app.kubernetes.io/instance": self.name,
        }
        if service is not None:
            labels["app.kubernetes.io/component"] = k8s_name(service.name)
        return labels

    def container(self, service: Service) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "name": checked(k8s_name(service.name), f"[program:{service.program}]"),
            "image": self.image,
            "command": service.argv,
        }
        if service.directory:
            spec["workingDir"] = service.directory
        env_from = []
        if self.configmap:
            env_from.append({"configMapRef": {"name": f"{self.name}-env"}})
        if self.secret.keys() & self.common.keys():
            env_from.append({"secretRef": {"name": f"{self.name}-secret"}})
        if env_from:
            spec["envFrom"] = env_from
        env: list[dict[str, Any]] = []
        for key, value in service.environment.items():
            if key in self.common:
                continue
            if is_secret(key, self.secrets):
                ref = {"name": f"{self.name}-secret", "key": f"{k8s_name(service.name)}.{key}"}
                env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
            else:
                env.append({"name": key, "value": value})
        if env:
            spec["env"] = env
        found = probe(service)
        if found is not None:
            readiness, ports = found
            if ports:
                spec["ports"] = ports
            spec["readinessProbe"] = readiness
            if service.rules.healthcheck_restart:
                spec["livenessProbe"] = dict(readiness)
        if service.uid is not None:
            spec["securityContext"] = {"runAsUser": service.uid}
        return spec

    def pod_spec(self, service: Service) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        waits = []
        for dep, condition in service.depends_on:
            waits.append(
                {
                    "name": checked(f"wait-{k8s_name(dep)}", f"[program:{service.program}]"),
                    "image": self.image,
                    "command": [
                        python(),
                        "-c",
                        WAIT_SCRIPT,
                        self.kinds[dep],
                        self.names[dep],
                        condition,
                    ],
                }
            )
        if waits:
            spec["serviceAccountName"] = f"{self.name}-waiter"
            spec["initContainers"] = waits
        spec["containers"] = [self.container(service)]
        spec["terminationGracePeriodSeconds"] = service.stopwaitsecs
        if service.stopsignal != "TERM":
            service.warnings.append(
                f"stopsignal={service.stopsignal}: Kubernetes always sends SIGTERM"
            )
        return spec

    def workload(self, service: Service) -> dict[str, Any]:
        labels = self.labels(service)
        template = {"metadata": {"labels": labels}, "spec": self.pod_spec(service)}
        name = self.names[service.name]
        if service.rules.essential:
            service.warnings.append("essential=true: no equivalent; the others keep running")
        if is_job(service):
            template["spec"]["restartPolicy"] = "Never"
            job: dict[str, Any] = {
                "backoffLimit": service.startretries if service.oneshot else 0,
                "template": template,
            }
            if service.replicas > 1:
                job["parallelism"] = job["completions"] = service.replicas
            if not service.autostart:
                job["suspend"] = True  # started with 'kubectl patch ... suspend: false'
            return {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": self.metadata(name, labels),
                "spec": job,
            }
        if service.restart == "on-failure":
            service.warnings.append(
                "autorestart=unexpected: a Deployment restarts the program after any exit"
            )
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self.metadata(name, labels),
            "spec": {
                "replicas": service.replicas if service.autostart else 0,
                "selector": {"matchLabels": labels},
                "template": template,
            },
        }

    def service_object(self, service: Service) -> dict[str, Any] | None:
        check = service.rules.healthcheck
        if check is None or check.kind == "cmd":
            return None
        port_name = "health" if check.kind == "tcp" else check.kind
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self.metadata(self.names[service.name], self.labels(service)),
            "spec": {
                "selector": self.labels(service),
                "ports": [{"name": port_name, "port": check.port, "targetPort": port_name}],
            },
        }

    def access(self) -> list[dict[str, Any]]:
        """What the init containers need to read Deployments and Jobs."""
        waiter = f"{self.name}-waiter"
        subject: dict[str, Any] = {"kind": "ServiceAccount", "name": waiter}
        if self.namespace:
            subject["namespace"] = self.namespace
        return [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": self.metadata(waiter)},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": self.metadata(waiter),
                "rules": [
                    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
                    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get"]},
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": self.metadata(waiter),
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": waiter,
                },
                "subjects": [subject],
            },
        ]

    def manifests(self) -> list[dict[str, Any]]:
        documents: list[dict[str, Any]] = []
        if self.configmap:
            documents.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": self.metadata(f"{self.name}-env"),
                    "data": self.configmap,
                }
            )
        if self.secret:
            documents.append(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": self.metadata(f"{self.name}-secret"),
                    "type": "Opaque",
                    "stringData": self.secret,
                }
            )
        if any(s.depends_on for s in self.made):
            documents += self.access()
        for service in self.made:
            documents.append(self.workload(service))
            exposed = self.service_object(service)
            if exposed is not None:
                documents.append(exposed)
        return documents


def manifests(
    made: Sequence[Service],
    name: str,
    image: str,
    *,
    namespace: str | None = None,
    secrets: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The Kubernetes objects, in the order ``kubectl apply`` should create them."""
    return Exporter(made, name, image, namespace, secrets).manifests()
