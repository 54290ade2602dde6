"""A pytest plugin: the project's programs, running for the whole test session.

Registered as the ``djsupervisor`` pytest plugin; request the ``supervisor`` fixture::

    def test_home_page(supervisor):
        supervisor.wait_running("web")

Override ``supervisor_options`` (a session fixture returning ``start()``'s keyword
arguments) to choose what runs::

    @pytest.fixture(scope="session")
    def supervisor_options():
        return {"exclude": ["celeryd"], "timeout": 60}
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .client.api import StartOptions, Supervisor


@pytest.fixture(scope="session")
def supervisor_options() -> StartOptions:
    """Keyword arguments for ``djsupervisor.start()``; override to customise."""
    return {}


@pytest.fixture(scope="session")
def supervisor(supervisor_options: StartOptions) -> Iterator[Supervisor]:
    """Run the project's programs for the session; stop them all at its end."""
    # Imported here: pytest loads this plugin in every session, Django project or not.
    from .client.api import start

    # Tests talk to the programs at once: a web server must be listening, not just
    # RUNNING. Without health checks configured, "healthy" waits for nothing more.
    options: StartOptions = {"wait": "healthy", **supervisor_options}
    with start(**options) as handle:
        yield handle
