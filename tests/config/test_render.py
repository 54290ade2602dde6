"""Rendering config files with Django's template engine (in-process, real files)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from djsupervisor.config import render
from djsupervisor.errors import ConfigError

ESCAPING_TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "OPTIONS": {"autoescape": True, "string_if_invalid": "INVALID", "builtins": []},
    }
]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_renders_context_tags_and_builtin_filters(tmp_path: Path) -> None:
    text = (
        "[program:web]\n"
        "{% if settings.DEBUG %}command=runserver{% else %}command=gunicorn{% endif %}\n"
        "directory={{ PROJECT_DIR }}\n"
        "port={{ environ.PORT|default:'8000' }}\n"
    )
    context = {"PROJECT_DIR": "/srv/p", "settings": settings, "environ": {}}
    assert render.render_text(text, tmp_path / "s.conf", context) == (
        "[program:web]\ncommand=gunicorn\ndirectory=/srv/p\nport=8000\n"
    )


def test_works_without_a_templates_setting(tmp_path: Path) -> None:
    # tests/settings.py defines no TEMPLATES: Django's default is an empty list.
    assert settings.TEMPLATES == []
    path = write(tmp_path / "s.conf", "x={{ A }}")
    assert render.render_file(path, {"A": "1"}) == "x=1"


@pytest.mark.parametrize("templates", [[], ESCAPING_TEMPLATES])
def test_nothing_is_html_escaped(tmp_path: Path, templates: list[dict[str, object]]) -> None:
    # Whatever the project's TEMPLATES say, config files are not HTML.
    with override_settings(TEMPLATES=templates):
        out = render.render_text(
            "a={{ environ.X }}\nb={{ environ.MISSING }}\n",
            tmp_path / "s.conf",
            {"environ": {"X": "a&b<c>'\""}},
        )
    assert out == "a=a&b<c>'\"\nb=\n"


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    path = write(tmp_path / "s.conf", "{% for k, v in env.items %}{{ k }}={{ v }},{% endfor %}")
    context = {"env": {"B": "2", "A": "1"}}
    assert render.render_file(path, context) == render.render_file(path, context) == "B=2,A=1,"


@pytest.mark.parametrize(
    ("text", "line", "detail"),
    [
        ("[program:a]\ncommand=x\n{% if %}\n", 3, "Unexpected end of expression in if tag."),
        ("[program:a]\n\n{% bogus %}\n", 3, "Invalid block tag on line 3: 'bogus'"),
        ("[program:a]\ncommand={{ x|nosuch }}\n", 2, "Invalid filter: 'nosuch'"),
        ("[program:a]\n{% if x %}\ncommand=x\n", 2, "Unclosed tag on line 2: 'if'"),
        # A filter that raises while rendering: an error, never a traceback.
        (
            "[program:a]\ncommand=x {{ 1|divisibleby:0 }}\n",
            2,
            "ZeroDivisionError: integer",  # the rest of the wording varies by Python
        ),
    ],
)
def test_template_errors_name_file_and_line(
    tmp_path: Path, text: str, line: int, detail: str
) -> None:
    path = write(tmp_path / "s.conf", text)
    with pytest.raises(ConfigError) as error:
        render.render_file(path, {})
    message = str(error.value)
    assert message.startswith(f"{path}:{line}: template error: ")
    assert detail in message
    assert "\n" not in message


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        render.render_file(tmp_path / "nope.conf", {})
    assert str(missing.value) == f"{tmp_path / 'nope.conf'}: config file not found"
    with pytest.raises(ConfigError) as directory:
        render.read(tmp_path)
    assert str(directory.value).startswith(f"{tmp_path}: cannot read config file: ")
    binary = tmp_path / "bin.conf"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError) as undecodable:
        render.read(binary)
    assert str(undecodable.value).startswith(f"{binary}: cannot read config file: ")


# --- the templated filter --------------------------------------------------------------


def test_templated_renders_a_file_next_to_itself_and_returns_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The path is relative to the config file, never to the working directory.
    monkeypatch.chdir(tmp_path)
    conf = write(tmp_path / "proj" / "supervisord.conf", "")
    write(tmp_path / "proj" / "deploy" / "nginx.conf", "root {{ PROJECT_DIR }}/static;\n")
    write(tmp_path / "proj" / "uwsgi.ini", "[uwsgi]\nchdir={{ PROJECT_DIR }}\n")
    text = (
        '[program:nginx]\ncommand=nginx -c {{ "deploy/nginx.conf"|templated }}\n'
        '[program:uwsgi]\ncommand=uwsgi {{ "uwsgi.ini"|templated }}\n'
    )
    out = render.render_text(text, conf, {"PROJECT_DIR": "/srv/p"})
    nginx = tmp_path / "proj" / "deploy" / "nginx.conf.templated"
    uwsgi = tmp_path / "proj" / "uwsgi.ini.templated"
    assert out.splitlines() == [
        "[program:nginx]",
        f"command=nginx -c {nginx}",
        "[program:uwsgi]",
        f"command=uwsgi {uwsgi}",
    ]
    assert nginx.read_text() == "root /srv/p/static;\n"
    assert uwsgi.read_text() == "[uwsgi]\nchdir=/srv/p\n"
    assert not (tmp_path / "deploy").exists()


def test_templated_gets_the_context_of_its_own_render(tmp_path: Path) -> None:
    # Two renders with two contexts, interleaved: each templated file gets its own.
    write(tmp_path / "a" / "inner.txt", "{{ NAME }} {{ APP_DIR }}")
    write(tmp_path / "b" / "inner.txt", "{{ NAME }} {{ APP_DIR }}")
    text = '{{ "inner.txt"|templated }}'
    out_a = render.render_text(text, tmp_path / "a" / "s.conf", {"NAME": "a", "APP_DIR": "/x"})
    out_b = render.render_text(text, tmp_path / "b" / "s.conf", {"NAME": "b", "APP_DIR": "/y"})
    assert out_a == str(tmp_path / "a" / "inner.txt.templated")
    assert out_b == str(tmp_path / "b" / "inner.txt.templated")
    assert (tmp_path / "a" / "inner.txt.templated").read_text() == "a /x"
    assert (tmp_path / "b" / "inner.txt.templated").read_text() == "b /y"


def test_templated_files_can_use_templated_relative_to_themselves(tmp_path: Path) -> None:
    write(tmp_path / "conf" / "outer.txt", 'include {{ "sub/inner.txt"|templated }}')
    write(tmp_path / "conf" / "sub" / "inner.txt", "value={{ V }}&<>")
    out = render.render_text('{{ "conf/outer.txt"|templated }}', tmp_path / "s.conf", {"V": 7})
    inner = tmp_path / "conf" / "sub" / "inner.txt.templated"
    assert out == str(tmp_path / "conf" / "outer.txt.templated")
    assert Path(out).read_text() == f"include {inner}"
    assert inner.read_text() == "value=7&<>"


def test_templated_takes_a_variable_too(tmp_path: Path) -> None:
    write(tmp_path / "x.conf", "{{ A }}")
    out = render.render_text(
        "{{ name|templated }}", tmp_path / "s.conf", {"name": "x.conf", "A": 1}
    )
    assert Path(out).read_text() == "1"


def test_templated_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        render.render_text('{{ "nope.conf"|templated }}', tmp_path / "s.conf", {})
    assert str(error.value) == f"{tmp_path / 'nope.conf'}: config file not found"


def test_templated_syntax_error_names_the_templated_file(tmp_path: Path) -> None:
    inner = write(tmp_path / "inner.txt", "ok\n{% endif %}\n")
    with pytest.raises(ConfigError) as error:
        render.render_text('\n{{ "inner.txt"|templated }}', tmp_path / "s.conf", {})
    assert str(error.value).startswith(f"{inner}:2: template error: ")
