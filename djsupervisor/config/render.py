"""Render supervisord.conf files with Django's template engine (our own Engine)."""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.template import Context, Engine, Library, Template, TemplateSyntaxError
from django.template.base import Origin, VariableDoesNotExist

from ..errors import ConfigError, MissingConfigFile, TemplateError


@functools.cache
def _base_engine() -> Engine:
    # Our own engine: works without a TEMPLATES setting, and config files are not
    # HTML, so nothing is escaped. debug=True gives line numbers for syntax errors.
    return Engine(autoescape=False, debug=True, libraries={}, builtins=[])


def _engine_for(path: Path, context: Mapping[str, Any]) -> Engine:
    """Return an engine whose ``templated`` filter renders files next to ``path``."""
    library = Library()

    @library.filter(name="templated")
    def templated(value: Any) -> str:
        """Render the file ``value`` (relative to this config file) to ``<file>.templated``."""
        # A plain str: template literals arrive as SafeString, which pathlib rejects
        # for single-component names ("nginx.conf").
        source = path.parent / str.__str__(str(value))
        target = source.with_name(source.name + ".templated")
        try:
            text = render_file(source, context)
        except MissingConfigFile as error:
            # A template error of this file (E003), not a missing project file (E002).
            raise TemplateError(str(error)) from None
        target.write_text(text)
        return str(target)

    engine = copy.copy(_base_engine())
    engine.template_builtins = [*engine.template_builtins, library]
    return engine


class UnknownVariable(Exception):
    """A template used a name that is not in the context: a typo, never a wish."""


class StrictContext(Context):
    """A context where an unknown top-level name is an error, also inside tags.

    Django renders unknown names as empty and ``{% if %}`` treats them as false, which
    hides typos such as ``{% if DEBUG %}`` for ``{% if settings.DEBUG %}``. Missing keys
    and attributes *below* a known name (``environ.X``, ``settings.X``) stay lenient, so
    ``{{ environ.PORT|default:"8000" }}`` works.
    """

    def __getitem__(self, key: Any) -> Any:
        try:
            return super().__getitem__(key)
        except KeyError:
            raise UnknownVariable(key) from None


def _where(path: Path, error: BaseException) -> str:
    """``path:line`` where the engine recorded the line of ``error``, else ``path``."""
    debug = getattr(error, "template_debug", None)
    return f"{path}:{debug['line']}" if debug else str(path)


def render_text(text: str, path: Path, context: Mapping[str, Any]) -> str:
    """Render template ``text`` read from ``path`` with ``context``."""
    engine = _engine_for(path, context)
    try:
        template = Template(text, origin=Origin(str(path)), name=str(path), engine=engine)
        return template.render(StrictContext(dict(context), autoescape=False))
    except UnknownVariable as error:
        where = _where(path, error)
        known = ", ".join(sorted(k for k in context if not k.startswith("_")))
        raise TemplateError(
            f"{where}: unknown template variable {error.args[0]!r} (known: {known})"
        ) from None
    except (TemplateSyntaxError, VariableDoesNotExist) as error:
        where = _where(path, error)
        # Django 6.1 starts the message with "Template: <name>, ": we already say where.
        message = str(error).removeprefix(f"Template: {path}, ")
        raise TemplateError(f"{where}: template error: {message}") from None
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror or error}: {error.filename}") from None
    except ConfigError:
        raise  # from a nested render (the templated filter): it names its own file
    except Exception as error:  # a filter, tag or attribute failing while rendering
        where = _where(path, error)
        raise TemplateError(f"{where}: template error: {type(error).__name__}: {error}") from None


def render_file(path: Path, context: Mapping[str, Any]) -> str:
    """Read and render the template at ``path``."""
    return render_text(read(path), path, context)


def read(path: Path) -> str:
    """Read a config file, with a one-line error naming it when that fails."""
    try:
        return path.read_text()
    except FileNotFoundError:
        raise MissingConfigFile(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config file: {error}") from None
