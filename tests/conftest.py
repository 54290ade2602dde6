import os
import socket
from collections.abc import Iterator

import django
import pytest

from tests.utils import Project

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()


@pytest.fixture
def projects() -> Iterator[list[Project]]:
    """Throw-away projects made by the test, all cleaned up after it, pass or fail."""
    made: list[Project] = []
    yield made
    for project in made:
        project.cleanup()


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A local TCP port something is listening on, for the test's duration."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]
