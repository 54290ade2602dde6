"""Where a Django project's supervisord configuration comes from, and its assembly."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.crypto import salted_hmac

from .. import cli, config
from ..conf import conf
from ..errors import ConfigError, MissingConfigFile, NoCommand, UnknownName
from . import envfiles, render
from .rundir import ensure_runtime_dir as ensure_runtime_dir  # re-exported: its old home
from .values import check_values

PACKAGE_DIR = Path(__file__).resolve().parent.parent
BUILTIN_FILE = PACKAGE_DIR / "builtin" / "supervisord.conf"
CONTRIB_DIR = PACKAGE_DIR / "contrib"
USERNAME = "djsupervisor"
# AF_UNIX paths are limited to 104 bytes on macOS (108 on Linux), NUL included.
MAX_SOCKET_PATH = 103


@dataclass(frozen=True)
class Source:
    """One config file to render: its path and, for an app's file, the app's directory."""

    path: Path
    app_dir: Path | None = None


@dataclass(frozen=True)
class Project:
    """A Django project as djsupervisor sees it."""

    directory: Path
    config_file: Path
    runtime_dir: Path
    explicit_config: bool = False

    @property
    def socket_path(self) -> Path:
        return self.runtime_dir / "supervisor.sock"

    @property
    def lock_path(self) -> Path:
        return self.runtime_dir / "supervisord.lock"


def _settings_dir() -> Path | None:
    module = os.environ.get("DJANGO_SETTINGS_MODULE") or getattr(settings, "SETTINGS_MODULE", None)
    if not module:
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).resolve().parent


def find_project_dir() -> Path:
    """Find the project directory: where ``manage.py`` sits, beside or above the settings."""
    if conf.SUPERVISOR_PROJECT_DIR is not None:
        return conf.SUPERVISOR_PROJECT_DIR.resolve()
    start = _settings_dir()
    if start is not None:
        for directory in (start, *start.parents):
            if (directory / "manage.py").is_file():
                return directory
    script = Path(sys.argv[0]).resolve()
    if script.name == "manage.py":
        return script.parent
    base_dir = getattr(settings, "BASE_DIR", None)
    return Path(base_dir).resolve() if base_dir else (start or Path.cwd())


def default_runtime_dir(project_dir: Path) -> Path:
    """Return a private directory, stable per project and user, short enough for AF_UNIX."""
    digest = hashlib.sha256(str(project_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"djsupervisor-{os.getuid()}-{digest}"


def locate(project_dir: str | Path | None = None, config_file: str | Path | None = None) -> Project:
    """Resolve the project directory, config file and runtime directory."""
    directory = Path(project_dir).resolve() if project_dir else find_project_dir()
    explicit = config_file is not None or conf.SUPERVISOR_CONFIG_FILE is not None
    if config_file is not None:
        # A command-line path is relative to the working directory, like --project-dir.
        path = Path(config_file)
    else:
        path = directory / (conf.SUPERVISOR_CONFIG_FILE or "supervisord.conf")
    runtime = conf.SUPERVISOR_RUNTIME_DIR or default_runtime_dir(directory)
    return Project(directory, path.resolve(), Path(runtime).absolute(), explicit)


def contrib_labels() -> list[str]:
    """The app labels djsupervisor ships a config for (``contrib/<label>/supervisord.conf``)."""
    if not CONTRIB_DIR.is_dir():
        return []
    return sorted(p.parent.name for p in CONTRIB_DIR.glob("*/supervisord.conf"))


def enabled_contrib() -> set[str]:
    """The contrib app labels ``SUPERVISOR_CONTRIB`` enables; a label we do not ship is an error."""
    setting = conf.SUPERVISOR_CONTRIB
    available = contrib_labels()
    if setting is True:
        return set(available)
    if setting is False:
        return set()
    unknown = [label for label in setting if label not in available]
    if unknown:
        raise UnknownName(
            f"SUPERVISOR_CONTRIB: no contrib config for app label {unknown[0]!r} "
            f"(available: {', '.join(available) or 'none'})"
        )
    return set(setting)


def find_sources(project: Project) -> list[Source]:
    """List config files, lowest priority first: built-in, apps, project."""
    sources = [Source(BUILTIN_FILE)]
    contrib_enabled = enabled_contrib()
    for app in apps.get_app_configs():
        own = Path(app.path) / "management" / "supervisord.conf"
        contrib = CONTRIB_DIR / app.label / "supervisord.conf"
        if own.is_file():
            sources.append(Source(own, Path(app.path)))
        elif app.label in contrib_enabled and contrib.is_file():
            sources.append(Source(contrib, Path(app.path)))
    if project.explicit_config or project.config_file.is_file():
        sources.append(Source(project.config_file))
    return sources


def credentials(project: Project) -> tuple[str, str]:
    """Derive the control channel's password from SECRET_KEY (secret, stable per project)."""
    try:
        digest = salted_hmac(
            "djsupervisor.control-channel", str(project.directory), algorithm="sha256"
        ).hexdigest()
    except ImproperlyConfigured as error:
        raise ConfigError(f"cannot derive control channel credentials: {error}") from None
    return USERNAME, digest[:32]


def project_package() -> str:
    """The top-level package of the settings module (``mysite`` for ``mysite.settings``)."""
    module = os.environ.get("DJANGO_SETTINGS_MODULE") or getattr(settings, "SETTINGS_MODULE", None)
    return str(module).split(".", 1)[0] if module else ""


def env_file_paths(project: Project, options: config.Options) -> list[Path]:
    """``SUPERVISOR_ENV_FILES`` (relative to the project directory), then ``--env-file``s."""
    paths = [project.directory / path for path in conf.SUPERVISOR_ENV_FILES]
    return paths + [Path(path) for path in options.env_files]


def template_context(
    project: Project, options: config.Options, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Return the context every config file is rendered with (``env``: env files' variables)."""
    return {
        "PROJECT_DIR": str(project.directory),
        # The config file in force, for commands that run manage.py again (autoreload).
        "CONFIG_FILE": str(project.config_file) if project.explicit_config else "",
        "PROJECT_PACKAGE": project_package(),
        "RUNTIME_DIR": str(project.runtime_dir),
        "PYTHON": sys.executable,
        "SUPERVISOR_OPTIONS": dataclasses.asdict(options),
        # The same options as command-line words, for programs that run manage.py again.
        "SUPERVISOR_ARGS": cli.conf_command_line(options),
        "settings": settings,
        "environ": {**os.environ, **(env or {})},
    }


def _parse_source(source: Source, context: Mapping[str, Any]) -> config.Parsed:
    text = render.read(source.path)
    if source.app_dir is not None:
        context = {**context, "APP_DIR": str(source.app_dir)}
    rendered = render.render_text(text, source.path, context)
    return config.parse(rendered, str(source.path), template=text)


def merged_sections(project: Project, options: config.Options) -> config.Merged:
    """Render, merge and complete every source; return sections with their origins."""
    env = envfiles.load(env_file_paths(project, options))
    context = template_context(project, options, env)
    merged = config.merge(_parse_source(source, context) for source in find_sources(project))
    config.apply_options(merged, options)
    # The built-in autoreload program (DEBUG) alone is no configuration.
    if not [name for name in config.process_names(merged.sections) if name != "autoreload"]:
        raise MissingConfigFile(
            f"{project.config_file}: no programs configured; create this file "
            "(or set SUPERVISOR_CONFIG_FILE) with at least one [program:name] section"
        )
    for name, values in merged.sections.items():
        if name.startswith(config.PROCESS_PREFIXES) and not values.get("command", "").strip():
            raise NoCommand(f"{merged.where(name)}: [{name}] has no command")
    check_values(merged)
    if len(str(project.socket_path)) > MAX_SOCKET_PATH:
        raise ConfigError(
            f"control socket path {project.socket_path} is too long for a unix socket; "
            "set SUPERVISOR_RUNTIME_DIR to a shorter directory"
        )
    if env:
        # supervisord gives [supervisord] environment= to every program and applies a
        # program's own environment= over it; the user's own keys there win too.
        supervisord = merged.sections.setdefault("supervisord", {})
        supervisord["environment"] = envfiles.environment_option(
            env, supervisord.get("environment")
        )
    username, password = credentials(project)
    config.add_control_channel(
        merged.sections,
        socket_path=str(project.socket_path),
        username=username,
        password=password,
        password_hash="{SHA}" + hashlib.sha1(password.encode()).hexdigest(),
    )
    return merged


def assemble(project: Project, options: config.Options) -> str:
    """Return the complete merged configuration text for ``project``."""
    return config.serialize(merged_sections(project, options).sections)
