"""Every Compose/Kubernetes export of the demo project and of the export tests' configs
validates against the compose-spec JSON schema and Kubernetes' own schemas (strict,
for the oldest Kubernetes we support and 1.37), and passes the checks schemas miss.

The schemas come from the ``export-test`` extra, installed by every CI job.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="pip install -e '.[export-test]'")
jsonschema = pytest.importorskip("jsonschema", reason="pip install -e '.[export-test]'")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="pip install -e '.[export-test]'"
)
pytest.importorskip("check_jsonschema", reason="pip install -e '.[export-test]'")

from tests.export import test_export, test_export_live  # noqa: E402
from tests.export.helpers import CONF, compose, kubernetes, semantic_problems  # noqa: E402
from tests.utils import REPO, site_settings  # noqa: E402

#: The oldest Kubernetes we support (the oldest kubernetes-validate 1.37.0 ships) and 1.37.
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")
DEMO = REPO / "tests" / "demo"
CONFIGS = {
    "mapping": CONF,
    "systemd-export": test_export.CONF,
    "live": test_export_live.CONF.format(
        migrate=test_export_live.MIGRATE, port=8000, path="/", retries=3
    ),
}


def compose_errors(document: dict[str, Any]) -> list[str]:
    """Errors of the pinned check-jsonschema's vendored compose-spec schema."""
    source = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((source / "compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]


def kubernetes_errors(documents: list[dict[str, Any]]) -> list[str]:
    errors = []
    for document in documents:
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                where = ".".join(str(part) for part in error.path)
                errors.append(f"{version} {document['kind']}: {where}: {error.message}")
    return errors


@pytest.fixture(params=sorted(CONFIGS))
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    with site_settings(tmp_path, SUPERVISOR_ENV_FILES=[], DEBUG=True) as directory:
        (directory / "supervisord.conf").write_text(CONFIGS[request.param])
        (directory / "show.py").write_text(test_export.SHOW)
        yield directory


def test_compose_export_validates(site: Path) -> None:
    document, _ = compose()
    assert document["services"]
    assert compose_errors(document) == []


def test_kubernetes_export_validates(site: Path) -> None:
    documents, _ = kubernetes("--namespace", "shop")
    assert documents
    assert kubernetes_errors(documents) == []
    assert semantic_problems(documents) == []


def demo_export(kind: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", "supervisor", "export", kind, "--image", "demo:1"],
        cwd=DEMO,
        env={
            **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
            "PYTHONPATH": str(REPO),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_demo_exports_validate() -> None:
    document = yaml.safe_load(demo_export("compose"))
    assert set(document["services"]) == {"web", "worker"}
    assert compose_errors(document) == []
    documents = list(yaml.safe_load_all(demo_export("kubernetes")))
    assert {d["kind"] for d in documents} == {"ConfigMap", "Deployment"}
    assert kubernetes_errors(documents) == []
    assert semantic_problems(documents) == []


# The validators must be able to fail: broken exports are refused.


def test_compose_schema_refuses_a_broken_file(site: Path) -> None:
    document, _ = compose()
    service = next(iter(document["services"].values()))
    service["restart_policy"] = "always"
    service.setdefault("depends_on", {})["x"] = {"condition": "service_hapy"}
    errors = compose_errors(document)
    assert any("restart_policy" in e for e in errors), errors
    assert any("service_hapy" in e for e in errors), errors


def test_kubernetes_checks_refuse_broken_objects(site: Path) -> None:
    documents, _ = kubernetes()
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    deployment["spec"]["replicas"] = "two"
    deployment["spec"]["selector"]["matchLabels"]["extra"] = "x"
    job = next((d for d in documents if d["kind"] == "Job"), None)
    if job is not None:
        job["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    deployment["metadata"]["name"] = "Bad_Name"
    assert any("replicas" in e for e in kubernetes_errors(documents))
    problems = semantic_problems(documents)
    assert "Deployment Bad_Name: not a DNS-1123 label" in problems
    assert "Deployment Bad_Name: selector does not match the pod labels" in problems
    if job is not None:
        name = job["metadata"]["name"]
        assert f"Job {name}: restartPolicy must be Never or OnFailure" in problems
