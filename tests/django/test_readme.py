"""README.rst is the user's manual: it must render, whole, without a warning."""

from __future__ import annotations

import io

import docutils.core

from tests.utils import REPO


def test_readme_renders_without_warnings() -> None:
    warnings = io.StringIO()
    # halt_level 2: the first warning (a short title underline, say) raises.
    docutils.core.publish_doctree(
        (REPO / "README.rst").read_text(),
        settings_overrides={"halt_level": 2, "warning_stream": warnings, "report_level": 2},
    )
    assert warnings.getvalue() == ""
