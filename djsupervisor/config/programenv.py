"""Where programs run, and which ``PATH`` finds their commands, under ``manage.py supervisor``.

A project's console scripts (``celery``, ``gunicorn``, ``memmon``) live beside the Python
running ``manage.py``, which need not be on ``PATH`` (``.venv/bin/python manage.py`` with
no activated virtualenv). And ``celery -A mysite`` only works from the project
directory, whatever directory ``manage.py supervisor`` was typed in.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def scripts_dir() -> str:
    """The directory of the Python running us: a virtualenv's ``bin``, say."""
    return os.path.dirname(os.path.abspath(sys.executable))


def with_scripts_first(path: str, scripts: str) -> str:
    """``path`` with ``scripts`` first (moved there if it was further down)."""
    entries = [entry for entry in path.split(os.pathsep) if entry and entry != scripts]
    return os.pathsep.join([scripts, *entries])


def apply(process_config: Any, project_dir: str) -> None:
    """Default a program's ``directory`` to ``project_dir`` and put our scripts on its PATH.

    An explicit ``directory=`` wins, and so does a ``PATH`` in the program's
    ``environment=`` (which already holds ``[supervisord] environment=``). supervisord
    resolves the command through the same ``PATH`` (``ProcessConfig.get_path``), so a
    bare ``celery`` is found there too.
    """
    if process_config.directory is None:
        process_config.directory = project_dir
    environment = dict(process_config.environment or {})
    if "PATH" in environment:
        return
    base = os.environ.get("PATH") or os.defpath
    environment["PATH"] = with_scripts_first(base, scripts_dir())
    process_config.environment = environment
