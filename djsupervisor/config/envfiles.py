"""dotenv files: read them (python-dotenv) and pass their variables to every program.

The variables go into ``[supervisord] environment=``, which supervisord gives every
program and applies a program's own ``environment=`` over. That value is parsed by
supervisord's ``dict_of_key_value_pairs`` (a non-POSIX ``shlex``) after ``%``
expansion and INI comment stripping, so each value is quoted for exactly that parser,
and a value it cannot carry unchanged is refused instead of being altered.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import EnvFileError

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# supervisord's INI parser cuts a value at " ;" or " #", also inside quotes.
_INLINE_COMMENT_RE = re.compile(r"\s[;#]")
_QUOTES = "'\""


def read(path: Path) -> dict[str, str]:
    """Return the variables of one dotenv file; a line it cannot parse is an error."""
    try:
        from dotenv import dotenv_values
        from dotenv.parser import parse_stream
    except ImportError:
        raise EnvFileError(
            "env files (SUPERVISOR_ENV_FILES, --env-file) need python-dotenv: "
            "pip install 'djsupervisor[dotenv]'"
        ) from None
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise EnvFileError(f"{path}: env file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise EnvFileError(f"{path}: cannot read env file: {error}") from None
    # python-dotenv only logs a warning for a line it cannot parse, and skips it.
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            where = f"{path}:{binding.original.line}"
            raise EnvFileError(f"{where}: cannot parse {binding.original.string.strip()!r}")
    values = dotenv_values(stream=io.StringIO(text))
    # "NAME" alone on a line has no value: it sets nothing.
    return {key: value for key, value in values.items() if value is not None}


def load(paths: Iterable[Path]) -> dict[str, str]:
    """Read the dotenv files in order; a later file's variable wins."""
    variables: dict[str, str] = {}
    for path in paths:
        for key, value in read(path).items():
            check(key, value, str(path))
            variables[key] = value
    return variables


def check(key: str, value: str, where: str) -> None:
    """Refuse a variable supervisord's environment parser would not pass on unchanged."""
    problem = None
    if not _NAME_RE.match(key):
        problem = "is not a valid variable name"
    elif "\n" in value or "\r" in value:
        problem = "has a multi-line value, which supervisord's environment cannot carry"
    elif _INLINE_COMMENT_RE.search(value):
        problem = "has ' ;' or ' #' in its value, where supervisord's parser cuts a comment"
    elif value and (value[0] in _QUOTES or value[-1] in _QUOTES):
        problem = "has a value starting or ending with a quote, which supervisord strips"
    elif '"' in value and "'" in value:
        problem = "has both kinds of quotes in its value, which supervisord cannot parse"
    if problem:
        raise EnvFileError(f"{where}: variable {key} {problem}")


def quote(value: str) -> str:
    """Quote ``value`` for supervisord's ``environment=`` (after ``check``)."""
    mark = "'" if '"' in value else '"'
    # supervisord expands %(name)s in [supervisord] environment= twice (when it reads
    # the option, then again before parsing the pairs): a literal % takes four.
    return mark + value.replace("%", "%%%%") + mark


def environment_option(variables: Mapping[str, str], own: str | None) -> str:
    """Return ``[supervisord] environment=``: the variables, then ``own`` (whose keys win)."""
    pairs = [f"{key}={quote(value)}" for key, value in variables.items()]
    if own and own.strip():
        pairs.append(own.strip())
    return ",".join(pairs)
