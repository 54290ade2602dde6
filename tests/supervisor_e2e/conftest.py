"""Fixtures and hooks of the supervisor end-to-end harness (see harness.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.supervisor_e2e.allowed import EXPECTED_FAILURES
from tests.supervisor_e2e.harness import Harness


@pytest.fixture(autouse=True)
def harness(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Substitute the test class's variant for supervisord/supervisorctl; clean up after."""
    import supervisor.tests.test_end_to_end as end_to_end

    variant = request.cls.variant
    made = Harness(variant, Path(tempfile.mkdtemp(prefix=f"djsv-e2e-{variant}-")))
    monkeypatch.setattr(end_to_end, "pexpect", made.pexpect_module())
    request.node.e2e_harness = made
    try:
        yield
    finally:
        made.cleanup()
    for server in made.servers:  # shown with -rP: what the bounds are measured against
        print(f"supervisord: console {server.console_bytes} B, peak RSS {server.peak_rss_kb} kB")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, pytest.CallInfo[None], None]:
    """Fail the test itself (not its teardown) on an anomaly, so the allow-list covers it."""
    outcome = yield
    made = getattr(item, "e2e_harness", None)
    # A unittest test's own failure is held in _excinfo, not in the outcome.
    if made is None or outcome.excinfo is not None or getattr(item, "_excinfo", None):
        return
    anomalies = list(made.anomalies())
    if anomalies:
        outcome.force_exception(AssertionError("; ".join(anomalies)))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        variant = getattr(getattr(item, "cls", None), "variant", None)
        reason = EXPECTED_FAILURES.get((variant, item.name)) if variant else None
        if reason:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))
