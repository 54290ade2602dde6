"""Orchestration options of ``[program:x]`` sections: parsing and validation (pure)."""

from __future__ import annotations

import textwrap

import pytest

from djsupervisor import config
from djsupervisor.config.rules import (
    Dependency,
    Healthcheck,
    Rules,
    find_cycle,
    parse_dependencies,
    parse_healthcheck,
    parse_rules,
)
from djsupervisor.errors import ConfigError

ORIGIN = "/proj/supervisord.conf"


def merged(text: str, *, app: str | None = None) -> config.Merged:
    """Sections as ``merged_sections()`` hands them over: parsed, merged, options applied."""
    sources = [config.parse(textwrap.dedent(text), ORIGIN)]
    if app is not None:
        sources.insert(0, config.parse(textwrap.dedent(app), "/proj/shop/management/s.conf"))
    result = config.merge(sources)
    config.apply_options(result, config.Options())
    return result


def rules_of(text: str, **kwargs: str) -> dict[str, Rules]:
    return parse_rules(merged(text, **kwargs))


def config_error(text: str) -> str:
    """The message ``parse_rules`` refuses ``text`` with; it must be one line."""
    with pytest.raises(ConfigError) as raised:
        rules_of(text)
    message = str(raised.value)
    assert "\n" not in message
    return message


# --- what parses --------------------------------------------------------------------------


def test_programs_without_orchestration_options_have_no_rules() -> None:
    assert (
        rules_of(
            """
            [program:plain]
            command = sleep 1
            autostart = true
            """
        )
        == {}
    )


def test_full_chain_parses_into_rules() -> None:
    found = rules_of(
        """
        [program:migrate]
        command = manage.py migrate --noinput
        oneshot = true

        [program:web]
        command = manage.py runserver
        depends_on = migrate:completed
        healthcheck = http://127.0.0.1:8000/health/?full=1
        healthcheck_interval = 0.5
        healthcheck_timeout = 1.5
        healthcheck_retries = 5
        healthcheck_start_period = 10
        healthcheck_restart = yes
        essential = true

        [program:worker]
        command = worker
        depends_on = web:healthy, migrate:completed cache

        [program:cache]
        command = cache
        """
    )
    assert found == {
        "migrate": Rules(oneshot=True),
        "web": Rules(
            depends_on=(Dependency("migrate", "completed"),),
            healthcheck=Healthcheck(
                "http",
                host="127.0.0.1",
                port=8000,
                path="/health/?full=1",
                interval=0.5,
                timeout=1.5,
                retries=5,
                start_period=10,
            ),
            healthcheck_restart=True,
            essential=True,
        ),
        # Space and comma separated alike; no condition means "started".
        "worker": Rules(
            depends_on=(
                Dependency("web", "healthy"),
                Dependency("migrate", "completed"),
                Dependency("cache", "started"),
            )
        ),
    }
    assert [str(d) for d in found["worker"].depends_on] == [
        "web:healthy",
        "migrate:completed",
        "cache",
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("tcp://127.0.0.1:5432", Healthcheck("tcp", host="127.0.0.1", port=5432)),
        ("tcp://db.local:6379", Healthcheck("tcp", host="db.local", port=6379)),
        ("http://localhost:8000", Healthcheck("http", host="localhost", port=8000, path="/")),
        ("https://[::1]:8443/ping", Healthcheck("https", host="::1", port=8443, path="/ping")),
        ("cmd:test -e /tmp/ready", Healthcheck("cmd", command="test -e /tmp/ready")),
        ("cmd: pg_isready -q ", Healthcheck("cmd", command="pg_isready -q")),
    ],
)
def test_healthcheck_specs(spec: str, expected: Healthcheck) -> None:
    check = parse_healthcheck("here", {"healthcheck": spec})
    assert check == expected
    # The documented defaults.
    assert (check.interval, check.timeout, check.retries, check.start_period) == (2, 2, 3, 0)


def test_no_healthcheck_is_none() -> None:
    assert parse_healthcheck("here", {}) is None
    assert parse_healthcheck("here", {"healthcheck": "  "}) is None


def test_dependencies_of_every_process_section_type_and_via_overrides() -> None:
    found = rules_of(
        """
        [program:__defaults__]
        startsecs = 0

        [program:__overrides__]
        essential = true

        [program:db]
        command = db

        [eventlistener:listener]
        command = listener
        events = PROCESS_STATE
        depends_on = db
        """
    )
    # __overrides__ reaches every program; pseudo-sections are no programs of their own.
    assert found == {
        "db": Rules(essential=True),
        "listener": Rules(depends_on=(Dependency("db"),)),
    }


def test_dependency_may_live_in_another_source() -> None:
    found = rules_of(
        """
        [program:web]
        command = web
        depends_on = queue
        """,
        app="""
        [program:queue]
        command = queue
        """,
    )
    assert found == {"web": Rules(depends_on=(Dependency("queue"),))}


# --- what is refused, in one line naming the file and the section --------------------------


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ("depends_on = nothere", "depends_on names no program 'nothere'"),
        ("depends_on = web", "depends_on names the program itself"),
        (
            "depends_on = db:ready",
            "'db:ready' is not NAME or NAME:CONDITION with CONDITION one of "
            "started, healthy, completed",
        ),
        ("depends_on = :healthy", "':healthy' is not NAME or NAME:CONDITION"),
        ("depends_on = db:healthy:x", "'db:healthy:x' is not NAME or NAME:CONDITION"),
        ("depends_on = db:completed", "depends_on db:completed: only a oneshot=true program"),
        ("depends_on = db:healthy", "depends_on db:healthy: db has no healthcheck"),
    ],
)
def test_bad_dependencies(options: str, needle: str) -> None:
    message = config_error(
        f"""
        [program:db]
        command = db

        [program:web]
        command = web
        {options}
        """
    )
    assert message.startswith(f"{ORIGIN}:5: [program:web]: ")
    assert needle in message


@pytest.mark.parametrize(
    "spec",
    [
        "tcp://127.0.0.1",  # no port
        "tcp://:5432",  # no host
        "tcp://127.0.0.1:http",  # port not a number
        "tcp://127.0.0.1:99999",  # port out of range
        "http://localhost/health",  # no port
        "ftp://127.0.0.1:21/",  # unknown scheme
        "127.0.0.1:8000",  # no scheme
        "localhost",
    ],
)
def test_malformed_healthcheck_urls(spec: str) -> None:
    message = config_error(
        f"""
        [program:web]
        command = web
        healthcheck = {spec}
        """
    )
    assert message == (
        f"{ORIGIN}:2: [program:web]: healthcheck = {spec}: expected tcp://HOST:PORT, "
        "http(s)://HOST:PORT/PATH or cmd:COMMAND"
    )


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ("healthcheck = cmd:", "healthcheck = cmd:: empty command"),
        ("healthcheck = cmd:   ", "empty command"),
        (
            "healthcheck = tcp://h:1\nhealthcheck_interval = soon",
            "healthcheck_interval = soon: not a number",
        ),
        (
            "healthcheck = tcp://h:1\nhealthcheck_timeout = -1",
            "healthcheck_timeout = -1: must not be negative",
        ),
        (
            "healthcheck = tcp://h:1\nhealthcheck_retries = 0",
            "healthcheck_retries must be at least 1",
        ),
        (
            "healthcheck = tcp://h:1\nhealthcheck_start_period = 1m",
            "healthcheck_start_period = 1m: not a number",
        ),
    ],
)
def test_bad_healthcheck_options(options: str, needle: str) -> None:
    body = "\n".join(f"        {line}" for line in options.splitlines())
    message = config_error(f"""
        [program:web]
        command = web
{body}
        """)
    assert message.startswith(f"{ORIGIN}:2: [program:web]: ")
    assert needle in message


def test_cycle_is_refused_naming_its_path() -> None:
    message = config_error(
        """
        [program:a]
        command = a
        depends_on = b

        [program:b]
        command = b
        depends_on = c:healthy

        [program:c]
        command = c
        healthcheck = tcp://127.0.0.1:1
        depends_on = a

        [program:d]
        command = d
        depends_on = a
        """
    )
    assert "depends_on cycle: a -> b -> c -> a" in message


def test_cycle_error_names_file_and_section() -> None:
    message = config_error(
        """
        [program:a]
        command = a
        depends_on = b

        [program:b]
        command = b
        depends_on = a
        """
    )
    assert message.startswith(f"{ORIGIN}:2: [program:a]: ")


def test_two_program_cycle_and_self_free_graphs() -> None:
    assert find_cycle({"a": ["b"], "b": ["a"]}) == ["a", "b", "a"]
    assert find_cycle({"x": ["y"], "y": ["z"], "z": ["y"]}) == ["y", "z", "y"]
    # Diamonds and dangling names are no cycles.
    assert find_cycle({"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []}) == []
    assert find_cycle({"a": ["elsewhere"]}) == []
    assert find_cycle({}) == []


def test_parse_dependencies_directly() -> None:
    assert parse_dependencies("w", "a, b:healthy\tc:completed") == (
        Dependency("a"),
        Dependency("b", "healthy"),
        Dependency("c", "completed"),
    )
    assert parse_dependencies("w", "") == ()
