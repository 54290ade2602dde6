"""The supervisor end-to-end tests expected to fail against djsupervisor, and why.

Keys are ``(variant, test name)``; every entry is a strict expected failure, so a test
that starts passing fails the run until its entry is removed. A documented difference
quotes the README.rst sentence it rests on; a known bug names its point in issue 15.
"""

from __future__ import annotations

BOTH = ("supervisorctl", "manage")

NO_PROGRAMS = (
    'README: "A configuration without any ``[program:x]`` or ``[eventlistener:x]`` section '
    'is refused ("no programs configured"), where supervisord would start with nothing to '
    'run." (the fixture has no program)'
)
INCLUDE_OPTION = (
    "README: \"``-i`` is ``--include PROG`` (see `Usage`_), not supervisord's "
    '``--identifier``; set ``identifier`` in ``[supervisord]`` instead." (and ' + NO_PROGRAMS + ")"
)
RAW_BYTES = (
    'README: "Bytes that are not UTF-8 reach the console unchanged (see `Console output`_), '
    "where supervisord's debug log shows them escaped (``Undecodable: b'\\x88\\n'``).\" "
    "(the test's strict UTF-8 decoder fails on the raw byte)"
)

EXPECTED_FAILURES: dict[tuple[str, str], str] = {
    **{(variant, "test_issue_1483a_identifier_default"): NO_PROGRAMS for variant in BOTH},
    **{(variant, "test_issue_1483b_identifier_from_config_file"): NO_PROGRAMS for variant in BOTH},
    **{
        (variant, "test_issue_1483c_identifier_from_command_line"): INCLUDE_OPTION
        for variant in BOTH
    },
    **{(variant, "test_issue_1596_asyncore_close_does_not_crash"): NO_PROGRAMS for variant in BOTH},
    **{(variant, "test_issue_638"): RAW_BYTES for variant in BOTH},
}
