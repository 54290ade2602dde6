"""The supervisor end-to-end allow-list rests on sentences README.rst really has."""

from __future__ import annotations

import re

from supervisor.tests import test_end_to_end

from tests.supervisor_e2e.allowed import EXPECTED_FAILURES
from tests.utils import REPO


def squeeze(text: str) -> str:
    return " ".join(text.split())


def test_every_documented_difference_is_quoted_from_the_readme() -> None:
    readme = squeeze((REPO / "README.rst").read_text())
    quotes = {
        quote
        for reason in EXPECTED_FAILURES.values()
        for quote in re.findall(r'README: "(.+?\.)"', reason)
    }
    assert len(quotes) == 3  # the three documented differences
    for quote in quotes:
        assert squeeze(quote) in readme, quote


def test_every_entry_names_a_variant_and_an_upstream_test() -> None:
    upstream = {name for name in vars(test_end_to_end.EndToEndTests) if name.startswith("test_")}
    for variant, name in EXPECTED_FAILURES:
        assert variant in ("supervisorctl", "manage")
        assert name in upstream, name
    for reason in EXPECTED_FAILURES.values():
        assert reason.startswith(("README: ", "issue 15 bug ")), reason
