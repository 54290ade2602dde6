"""Unit tests of the pure config functions: parse, merge, options, control channel, serialize."""

from __future__ import annotations

import textwrap

import pytest
from supervisor.options import UnhosedConfigParser

from djsupervisor import config
from djsupervisor.config import Merged, Options, Parsed
from djsupervisor.errors import ConfigError


def parse(text: str, origin: str = "a.conf", template: str | None = None) -> Parsed:
    return config.parse(textwrap.dedent(text), origin, template)


def merged(*texts: str) -> Merged:
    return config.merge(parse(text, f"f{i}.conf") for i, text in enumerate(texts))


def applied(*texts: str, **options: tuple[str, ...] | str | bool) -> dict[str, dict[str, str]]:
    result = merged(*texts)
    config.apply_options(result, Options(**options))  # type: ignore[arg-type]
    return result.sections


# --- parse -----------------------------------------------------------------------------


def test_parse_sections_options_and_lines() -> None:
    parsed = parse(
        """\
        ; a comment line
        # another one
        [program:web]
        Command = run web ; the author's comment
        autostart: true

        [supervisord]
        logfile=/tmp/x.log
        """
    )
    assert parsed.sections == {
        "program:web": {"command": "run web", "autostart": "true"},
        "supervisord": {"logfile": "/tmp/x.log"},
    }
    assert parsed.lines == {"program:web": 3, "supervisord": 7}
    assert parsed.origin == "a.conf"


def test_parse_joins_continuation_lines_like_supervisord() -> None:
    text = "[program:web]\ncommand=run\nenvironment=\n    A=1,\n    B=2\nautostart=true\n"
    expected = UnhosedConfigParser()
    expected.read_string(text)
    parsed = config.parse(text, "a.conf")
    assert parsed.sections["program:web"] == dict(expected.items("program:web"))
    assert parsed.sections["program:web"]["environment"] == "\nA=1,\nB=2"


@pytest.mark.parametrize(
    "text",
    [
        # Options indented alike (a template's {% if %} block) are separate options.
        "[program:a]\n    command=x\n    autostart=true\n",
        # Blank lines inside a value (left by template tags) stay in it.
        "[program:a]\ncommand=x\nenvironment=\n    A=1,\n\n    B=2\n\n[program:b]\ncommand=y\n",
        # A comment line neither ends a value nor joins it.
        "[program:a]\ncommand=x\n  ; note\n  --flag ; said so\nuser=me\n",
        # Deeper indentation continues; equal or shallower starts a new option.
        "[program:a]\n  command=x\n      -v\n  user=me\n",
        "[program:a]\ncommand=x   \n\n\n",
    ],
)
def test_parse_reads_lines_like_supervisords_parser(text: str) -> None:
    expected = UnhosedConfigParser()
    expected.read_string(text)
    parsed = config.parse(text, "a.conf")
    assert parsed.sections == {name: dict(expected.items(name)) for name in expected.sections()}


def test_parse_keeps_hash_and_semicolon_without_leading_space() -> None:
    parsed = parse("[program:web]\ncommand=echo a;b#c\n")
    assert parsed.sections["program:web"]["command"] == "echo a;b#c"


def test_parse_merges_a_section_repeated_in_one_file() -> None:
    parsed = parse("[program:a]\ncommand=x\n[program:b]\ncommand=y\n[program:a]\nuser=me\n")
    assert parsed.sections["program:a"] == {"command": "x", "user": "me"}
    assert parsed.lines["program:a"] == 1


def test_parse_option_before_any_section() -> None:
    with pytest.raises(ConfigError) as error:
        parse("command=x\n[program:a]\n", "p.conf")
    assert str(error.value) == "p.conf:1: option 'command=x' appears before any [section]"


def test_parse_garbage_line() -> None:
    with pytest.raises(ConfigError) as error:
        parse("[program:a]\ncommand=x\njust words\n", "p.conf")
    assert str(error.value) == "p.conf:3: cannot parse line 'just words'"


@pytest.mark.parametrize("marker", [" ;", " #", "\t;"])
def test_parse_refuses_a_comment_marker_that_came_from_a_template(marker: str) -> None:
    template = "[program:a]\ncommand=echo {{ environ.X }}\n"
    rendered = f"[program:a]\ncommand=echo a{marker}b\n"
    with pytest.raises(ConfigError) as error:
        config.parse(rendered, "p.conf", template=template)
    message = str(error.value)
    assert message.startswith(f"p.conf:2: [program:a] command: rendered value contains {marker!r}")
    assert "\n" not in message


def test_parse_refuses_a_comment_marker_in_a_rendered_continuation_line() -> None:
    template = "[program:a]\ncommand=x\nenvironment=\n    A={{ environ.X }}\n"
    rendered = "[program:a]\ncommand=x\nenvironment=\n    A=a ;b\n"
    with pytest.raises(ConfigError, match=r"^p\.conf:4: \[program:a\] environment: rendered"):
        config.parse(rendered, "p.conf", template=template)


def test_parse_accepts_the_authors_own_inline_comment_in_a_template() -> None:
    template = "[program:a]\ncommand=echo {{ X }} ; keep me out\n"
    rendered = "[program:a]\ncommand=echo hello ; keep me out\n"
    parsed = config.parse(rendered, "p.conf", template=template)
    assert parsed.sections["program:a"]["command"] == "echo hello"


# --- merge -----------------------------------------------------------------------------


def test_merge_later_sources_win_option_by_option() -> None:
    result = merged(
        "[program:w]\ncommand=builtin\nautostart=true\n[supervisord]\nloglevel=info\n",
        "[program:w]\ncommand=app\nstopsignal=INT\n",
        "[program:w]\ncommand=project\n[program:x]\ncommand=x\n",
    )
    assert result.sections == {
        "program:w": {"command": "project", "autostart": "true", "stopsignal": "INT"},
        "supervisord": {"loglevel": "info"},
        "program:x": {"command": "x"},
    }
    assert result.where("program:w") == "f2.conf:1"
    assert result.where("supervisord") == "f0.conf:4"
    assert result.where("rpcinterface:supervisor") == "<djsupervisor>"


@pytest.mark.parametrize("name", ["prgram:web", "program", "program:", "supervisor", "foo"])
def test_merge_refuses_unknown_section_types(name: str) -> None:
    with pytest.raises(ConfigError) as error:
        merged("[program:ok]\ncommand=x\n", f"\n[{name}]\ncommand=x\n")
    message = str(error.value)
    assert message.startswith(f"f1.conf:2: unknown section type [{name}]; expected one of ")
    assert "\n" not in message


@pytest.mark.parametrize(
    "name",
    [
        "supervisord",
        "supervisorctl",
        "unix_http_server",
        "inet_http_server",
        "include",
        "program:a",
        "group:g",
        "eventlistener:e",
        "fcgi-program:f",
        "rpcinterface:r",
        "ctlplugin:c",
    ],
)
def test_merge_accepts_every_section_type_supervisord_knows(name: str) -> None:
    assert name in merged(f"[{name}]\nx=1\n").sections


# --- apply_options ---------------------------------------------------------------------


def test_defaults_fill_only_what_a_program_lacks_after_merging() -> None:
    sections = applied(
        # The app sets startsecs; the defaults come later but must not override it.
        "[program:a]\ncommand=a\nstartsecs=5\n",
        "[program:__defaults__]\nstartsecs=0\nautorestart=true\n[program:b]\ncommand=b\n",
    )
    assert sections["program:a"] == {"command": "a", "startsecs": "5", "autorestart": "true"}
    assert sections["program:b"] == {"command": "b", "startsecs": "0", "autorestart": "true"}


def test_defaults_from_an_early_source_fill_programs_of_later_ones() -> None:
    sections = applied("[program:__defaults__]\nuser=nobody\n", "[program:z]\ncommand=z\n")
    assert sections["program:z"] == {"command": "z", "user": "nobody"}


def test_overrides_force_options_on_every_program() -> None:
    sections = applied(
        "[program:__overrides__]\nautostart=false\n",
        "[program:a]\ncommand=a\nautostart=true\n[program:b]\ncommand=b\n",
        "[program:__defaults__]\nautostart=true\nstartsecs=1\n",
    )
    assert sections["program:a"] == {"command": "a", "autostart": "false", "startsecs": "1"}
    assert sections["program:b"] == {"command": "b", "autostart": "false", "startsecs": "1"}


def test_pseudo_sections_never_reach_the_output() -> None:
    sections = applied(
        "[program:__defaults__]\nstartsecs=0\n[program:__overrides__]\nuser=me\n"
        "[program:a]\ncommand=a\n"
    )
    assert not set(config.PSEUDO_SECTIONS) & set(sections)
    assert "__defaults__" not in config.serialize(sections)
    assert config.process_names(sections) == ["a"]


def test_exclude_true_removes_a_section_and_include_brings_it_back() -> None:
    conf = "[program:a]\ncommand=a\n[program:b]\ncommand=b\nexclude=true\n"
    assert set(applied(conf)) == {"program:a", "supervisord"}
    back = applied(conf, include=("b",))
    assert back["program:b"] == {"command": "b"}


@pytest.mark.parametrize("value", ["true", "yes", "on", "1", "TRUE"])
def test_exclude_reads_booleans_like_supervisord(value: str) -> None:
    assert "program:a" not in applied(f"[program:a]\ncommand=a\nexclude={value}\n")


def test_a_later_source_can_exclude_and_an_even_later_one_restore() -> None:
    app = "[program:a]\ncommand=a\n[program:b]\ncommand=b\n"
    assert "program:a" not in applied(app, "[program:a]\nexclude=true\n")
    assert "program:a" in applied(app, "[program:a]\nexclude=true\n", "[program:a]\nexclude=no\n")


def test_exclude_works_for_any_section_not_only_programs() -> None:
    sections = applied("[program:a]\ncommand=a\n[inet_http_server]\nport=9001\nexclude=true\n")
    assert "inet_http_server" not in sections


def test_command_line_launch_nolaunch_exclude() -> None:
    conf = (
        "[program:a]\ncommand=a\n[program:b]\ncommand=b\nautostart=false\n[program:c]\ncommand=c\n"
    )
    sections = applied(conf, launch=("b",), nolaunch=("a",), exclude=("c",))
    assert sections["program:a"]["autostart"] == "false"
    assert sections["program:b"]["autostart"] == "true"
    assert "program:c" not in sections


def test_command_line_beats_overrides() -> None:
    sections = applied(
        "[program:__overrides__]\nautostart=false\n[program:a]\ncommand=a\n", launch=("a",)
    )
    assert sections["program:a"]["autostart"] == "true"


def test_command_line_applies_to_eventlisteners_too() -> None:
    sections = applied("[eventlistener:e]\ncommand=e\nevents=TICK_5\n", exclude=("e",))
    assert "eventlistener:e" not in sections


@pytest.mark.parametrize("flag", ["launch", "nolaunch", "exclude", "include", "autoreload"])
def test_command_line_names_an_unknown_program(flag: str) -> None:
    with pytest.raises(ConfigError) as error:
        applied("[program:b]\ncommand=b\n[program:a]\ncommand=a\n", **{flag: ("nope",)})
    assert str(error.value) == f"--{flag} nope: no program named 'nope' (programs: a, b)"


def test_command_line_cannot_name_a_pseudo_section() -> None:
    with pytest.raises(ConfigError, match="no program named '__defaults__'"):
        applied("[program:__defaults__]\nx=1\n[program:a]\ncommand=a\n", exclude=("__defaults__",))


def test_pidfile_and_logfile_from_the_command_line_win() -> None:
    sections = applied(
        "[supervisord]\npidfile=/a.pid\nlogfile=/a.log\n[program:a]\ncommand=a\n",
        pidfile="/b.pid",
        logfile="/b.log",
    )
    assert sections["supervisord"] == {"pidfile": "/b.pid", "logfile": "/b.log"}
    untouched = applied("[supervisord]\npidfile=/a.pid\n[program:a]\ncommand=a\n")
    assert untouched["supervisord"] == {"pidfile": "/a.pid"}


def test_excluded_programs_leave_their_groups() -> None:
    sections = applied(
        "[program:a]\ncommand=a\n[program:b]\ncommand=b\n[program:c]\ncommand=c\n"
        "[group:ab]\npriority=5\nprograms=a, b\n[group:c]\nprograms=c\n",
        exclude=("a", "c"),
    )
    assert sections["group:ab"] == {"priority": "5", "programs": "b"}
    assert "group:c" not in sections


# --- control channel -------------------------------------------------------------------

CHANNEL = {
    "socket_path": "/run/dj/supervisor.sock",
    "username": "user",
    "password": "secret",
    "password_hash": "{SHA}hash",
}


def test_control_channel_is_added_when_none_is_configured() -> None:
    sections: config.Sections = {"program:a": {"command": "a"}}
    config.add_control_channel(sections, **CHANNEL)
    assert sections["unix_http_server"] == {
        "file": "/run/dj/supervisor.sock",
        "chmod": "0700",
        "username": "user",
        "password": "{SHA}hash",
    }
    assert sections["supervisorctl"] == {
        "serverurl": "unix:///run/dj/supervisor.sock",
        "username": "user",
        "password": "secret",
    }
    assert sections["rpcinterface:supervisor"] == {
        "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"
    }


def test_a_user_unix_server_is_honoured() -> None:
    sections: config.Sections = {"unix_http_server": {"file": "/my.sock"}}
    config.add_control_channel(sections, **CHANNEL)
    assert sections["unix_http_server"] == {"file": "/my.sock"}
    assert sections["supervisorctl"] == {"serverurl": "unix:///my.sock"}


def test_a_user_unix_server_with_credentials_passes_them_to_supervisorctl() -> None:
    sections: config.Sections = {
        "unix_http_server": {"file": "/my.sock", "username": "u", "password": "p"}
    }
    config.add_control_channel(sections, **CHANNEL)
    assert sections["supervisorctl"] == {
        "serverurl": "unix:///my.sock",
        "username": "u",
        "password": "p",
    }


def test_a_hashed_user_password_is_not_copied_to_supervisorctl() -> None:
    sections: config.Sections = {
        "unix_http_server": {"file": "/my.sock", "username": "u", "password": "{SHA}abc"},
        "supervisorctl": {"password": "plain"},
    }
    config.add_control_channel(sections, **CHANNEL)
    assert sections["supervisorctl"] == {
        "password": "plain",
        "serverurl": "unix:///my.sock",
        "username": "u",
    }


@pytest.mark.parametrize(
    ("port", "url"),
    [
        ("127.0.0.1:9001", "http://127.0.0.1:9001"),
        ("*:9001", "http://localhost:9001"),
        ("9001", "http://localhost:9001"),
    ],
)
def test_a_user_inet_server_is_honoured(port: str, url: str) -> None:
    sections: config.Sections = {"inet_http_server": {"port": port, "username": "u"}}
    config.add_control_channel(sections, **CHANNEL)
    assert "unix_http_server" not in sections
    assert sections["inet_http_server"] == {"port": port, "username": "u"}
    assert sections["supervisorctl"] == {"serverurl": url, "username": "u"}


def test_user_supervisorctl_and_rpcinterface_settings_are_kept() -> None:
    sections: config.Sections = {
        "supervisorctl": {"serverurl": "unix:///elsewhere.sock", "username": "me"},
        "rpcinterface:supervisor": {"supervisor.rpcinterface_factory": "my:factory"},
    }
    config.add_control_channel(sections, **CHANNEL)
    assert sections["supervisorctl"] == {
        "serverurl": "unix:///elsewhere.sock",
        "username": "me",
        "password": "secret",
    }
    assert sections["rpcinterface:supervisor"] == {"supervisor.rpcinterface_factory": "my:factory"}


# --- serialize -------------------------------------------------------------------------


def test_serialize_puts_global_sections_first() -> None:
    text = config.serialize(
        {
            "program:a": {"command": "a"},
            "supervisorctl": {"serverurl": "unix:///s"},
            "supervisord": {"logfile": "/l"},
            "rpcinterface:supervisor": {"x": "y"},
            "unix_http_server": {"file": "/s"},
        }
    )
    assert text == (
        "[supervisord]\nlogfile = /l\n\n"
        "[unix_http_server]\nfile = /s\n\n"
        "[supervisorctl]\nserverurl = unix:///s\n\n"
        "[program:a]\ncommand = a\n\n"
        "[rpcinterface:supervisor]\nx = y\n"
    )


def test_serialize_round_trips_through_supervisords_own_parser() -> None:
    sections = {
        "supervisord": {"logfile": "/tmp/x.log"},
        "program:web": {
            "command": "/usr/bin/env python -c 'print(1)'",
            "environment": "\nA=1,\nB=2",
            "directory": "",
        },
    }
    text = config.serialize(sections)
    assert config.parse(text, "out").sections == sections
    parser = UnhosedConfigParser()
    parser.read_string(text)
    assert {name: dict(parser.items(name)) for name in parser.sections()} == sections
