"""supervisor's own end-to-end suite, unchanged, in three variants (see harness.py).

Run it with ``python -m pytest tests/supervisor_e2e/run_suite.py``. Its name keeps it out
of the plain ``python -m pytest`` (it takes minutes); ``.ci/run`` runs it in one job.
"""

from __future__ import annotations

import os

# supervisor's module defines real tests only with END_TO_END set when it is imported.
os.environ.setdefault("END_TO_END", "1")
# Imported as a module: a class imported by name would be collected a fourth time.
from supervisor.tests import test_end_to_end as upstream


class TestStock(upstream.EndToEndTests):
    """The baseline: supervisord and supervisorctl as shipped."""

    variant = "stock"


class TestStockSupervisorctl(upstream.EndToEndTests):
    """djsupervisor's server (``manage.py supervisor``), the stock supervisorctl client."""

    variant = "supervisorctl"


class TestManagePy(upstream.EndToEndTests):
    """djsupervisor's server and ``manage.py supervisor ACTION`` as the client."""

    variant = "manage"
