"""The control channel as seen from a program supervisord runs (the web server, say)."""

from __future__ import annotations

import os

from .client import Supervisor


def connect_here() -> Supervisor:
    """Return a handle on this project's supervisord, without contacting it.

    A program supervisord runs gets the channel in its environment
    (``SUPERVISOR_SERVER_URL``, ``SUPERVISOR_USERNAME``, ``SUPERVISOR_PASSWORD``): use
    it, so the page talks to the supervisord that runs it. Elsewhere (``runserver`` in a
    terminal), derive it from the project's settings, as ``manage.py supervisor`` does.
    """
    url = os.environ.get("SUPERVISOR_SERVER_URL")
    if url:
        return Supervisor(
            url, os.environ.get("SUPERVISOR_USERNAME"), os.environ.get("SUPERVISOR_PASSWORD")
        )
    from .api import connect

    return connect()
