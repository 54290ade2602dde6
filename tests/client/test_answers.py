"""XML-RPC answers read with ElementTree (``client/answers.py``) are xmlrpc.client's values."""

from __future__ import annotations

import sys
import xmlrpc.client
from pathlib import Path
from typing import Any

import pytest
from supervisor.xmlrpc import SupervisorTransport

from djsupervisor import config
from djsupervisor.client import answers, channel
from tests.utils import Project, ctl_section, make_project, sleeper

CONF = f"""
[program:one]
command={sleeper("one")}
startsecs=0

[program:two]
command={sleeper("two")}
startsecs=0
"""


def read(body: bytes) -> tuple[Any, ...]:
    answer = answers.Answer()
    parser = answers.Parser(answer)
    parser.feed(body)
    parser.close()
    return answer.close()


@pytest.mark.parametrize(
    "value",
    [
        "text with <markup> & \u00e9",
        "",
        0,
        -(2**31),
        True,
        False,
        1.5,
        None,
        [],
        [1, ["nested", {"k": [2.5]}]],
        {"": "empty name", "pid": 42, "description": "pid 42, uptime 0:00:01"},
        xmlrpc.client.Binary(b"\x00\x01binary"),
        xmlrpc.client.DateTime("20260101T12:00:00"),
    ],
)
def test_values_are_xmlrpc_clients(value: Any) -> None:
    body = xmlrpc.client.dumps((value,), methodresponse=True, allow_none=True).encode()
    assert read(body) == xmlrpc.client.loads(body)[0]


def test_a_fault_raises_xmlrpc_clients_fault() -> None:
    body = xmlrpc.client.dumps(xmlrpc.client.Fault(10, "BAD_NAME: nope")).encode()
    with pytest.raises(xmlrpc.client.Fault) as raised:
        read(body)
    assert (raised.value.faultCode, raised.value.faultString) == (10, "BAD_NAME: nope")


def test_a_broken_answer_is_a_response_error() -> None:
    with pytest.raises(xmlrpc.client.ResponseError):
        read(b"<methodResponse><params><param><value><int>1</int>")


def test_an_answer_nested_deeper_than_the_recursion_limit_is_a_response_error() -> None:
    depth = sys.getrecursionlimit() + 10
    value = "<value><array><data>" * depth + "</data></array></value>" * depth
    body = f"<methodResponse><params><param>{value}</param></params></methodResponse>"
    with pytest.raises(xmlrpc.client.ResponseError, match="nested too deeply"):
        read(body.encode())


def test_a_running_supervisord_answers_alike(projects: list[Project], tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", CONF)
    projects.append(project)
    project.start()
    project.wait_running("one", "two")
    ctl = ctl_section(project)
    args = (ctl.get("username"), ctl.get("password"), ctl["serverurl"])

    def call(transport: Any, method: str, *params: Any) -> Any:
        proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport(*args))
        try:
            return getattr(proxy, method)(*params)
        except xmlrpc.client.Fault as fault:
            return ("fault", fault.faultCode, fault.faultString)
        finally:
            proxy("close")()

    calls: list[tuple[Any, ...]] = [
        ("supervisor.getAllProcessInfo",),
        ("supervisor.getState",),
        ("supervisor.readLog", 0, 500),
        ("supervisor.getProcessInfo", "nope"),
        (
            "system.multicall",
            [
                {"methodName": "supervisor.getProcessInfo", "params": ["one"]},
                {"methodName": "supervisor.getProcessInfo", "params": ["nope"]},
            ],
        ),
    ]
    for method, *params in calls:
        ours = call(answers.Transport, method, *params)
        assert ours == call(SupervisorTransport, method, *params), method
    assert len(call(answers.Transport, "supervisor.getAllProcessInfo")) == 2
    # Both ways to a proxy (supervisorctl's, the typed client's) read with ElementTree.
    merged = config.Merged({"supervisorctl": ctl})
    options = channel.client_options(lambda: merged, str(project.path / "supervisord.conf"))
    try:
        assert isinstance(options.getServerProxy()("transport"), answers.Transport)
    finally:
        options.close_proxies()
    typed = channel.server_proxy(ctl["serverurl"], ctl.get("username"), ctl.get("password"))
    assert isinstance(typed("transport"), answers.Transport)
