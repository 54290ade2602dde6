"""The admin's Programs page, through Django's test client, against a real supervisord."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client, override_settings

from tests.utils import (
    ADMIN_APP_SETTINGS,
    Project,
    ctl_section,
    make_project,
    program,
    sleeper,
    wait_for,
)

ADMIN_SETTINGS: dict[str, Any] = {
    **ADMIN_APP_SETTINGS,
    "ROOT_URLCONF": "tests.admin_site_urls",
    "STATIC_URL": "/static/",
    "ALLOWED_HOSTS": ["testserver"],
    "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
}
MARKUP = "<script>alert(1)</script>"
PAGE = "/admin/supervisor/"


@pytest.fixture(scope="module")
def site() -> Iterator[None]:
    """An admin site in this process (the unit tests' in-memory database, migrated)."""
    from django.core.checks.registry import registry

    # The admin and auth apps register system checks when they load; later tests run
    # without those apps, so put the registry back as it was.
    saved = (set(registry.registered_checks), set(registry.deployment_checks))
    try:
        with override_settings(**ADMIN_SETTINGS):
            yield from _migrated_with_users()
    finally:
        for checks, before in zip(
            (registry.registered_checks, registry.deployment_checks), saved, strict=True
        ):
            checks.clear()
            checks.update(before)


def _migrated_with_users() -> Iterator[None]:
    call_command("migrate", verbosity=0, interactive=False)
    from django.contrib.auth.models import Permission, User

    def user(name: str, *perms: str, staff: bool = True) -> None:
        made = User.objects.create_user(name, password="pw", is_staff=staff)
        made.user_permissions.set(Permission.objects.filter(codename__in=perms))

    user("boss", "view_programs", "control_programs")
    user("viewer", "view_programs")
    user("staff")
    user("nonstaff", "view_programs", "control_programs", staff=False)
    yield


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A real ``manage.py supervisor`` with real programs, for the whole module."""
    proj = make_project(
        tmp_path_factory.mktemp("admin") / "proj",
        f"""
        [program:sleeper]
        command={sleeper("sleeper")}
        startsecs=0
        [program:trapper]
        command={program("trapper.py", "trapper", "USR1=report")}
        startsecs=0
        [program:markup]
        command={sleeper(MARKUP)}
        startsecs=0
        """,
    )
    try:
        proj.start()
        proj.wait_running("sleeper", "trapper", "markup")
        yield proj
    finally:
        proj.cleanup()


@pytest.fixture
def channel(live: Project, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The channel in the environment, as supervisord gives it to the web program."""
    ctl = ctl_section(live)
    monkeypatch.setenv("SUPERVISOR_SERVER_URL", ctl["serverurl"])
    monkeypatch.setenv("SUPERVISOR_USERNAME", ctl["username"])
    monkeypatch.setenv("SUPERVISOR_PASSWORD", ctl["password"])
    return ctl


class Browser:
    """A test client that checks every answer never carries the channel's password."""

    def __init__(self, user: str | None, password: str, **kwargs: Any) -> None:
        self.client = Client(**kwargs)
        self.secret = password
        if user is not None:
            assert self.client.login(username=user, password="pw")

    def _checked(self, response: Any) -> Any:
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert self.secret.encode() not in body
        response.body = body.decode()
        return response

    def get(self, url: str, data: dict[str, str] | None = None, **kwargs: Any) -> Any:
        return self._checked(self.client.get(url, data, **kwargs))

    def post(self, url: str, data: dict[str, str], **kwargs: Any) -> Any:
        return self._checked(self.client.post(url, data, **kwargs))


def pids(live: Project) -> dict[str, int]:
    out, err, code = live.manage("supervisor", "pid", "all")
    assert code == 0, err
    names = ["markup", "sleeper", "trapper"]  # supervisorctl's order: by name
    return dict(zip(names, map(int, out.split()), strict=True))


def table_pids(html: str) -> dict[str, int]:
    return {
        name: int(pid) for name, pid in re.findall(r'data-name="([^"]+)" data-pid="(\d+)"', html)
    }


READ_URLS = [PAGE, f"{PAGE}table/", f"{PAGE}log/sleeper/", f"{PAGE}log/sleeper/tail/?offset=0"]
READ_URLS.append(f"{PAGE}log/sleeper/download/")
ACTIONS = [
    {"action": "start", "name": "sleeper"},
    {"action": "stop", "name": "sleeper"},
    {"action": "restart", "name": "sleeper"},
    {"action": "signal", "name": "trapper", "signal": "USR1"},
    {"action": "restart", "name": "all"},
]


def test_anonymous_goes_to_the_login(site: None, channel: dict[str, str], live: Project) -> None:
    before = pids(live)
    browser = Browser(None, channel["password"])
    for url in READ_URLS:
        response = browser.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/?next=/admin/supervisor/")
    for data in ACTIONS:
        response = browser.post(f"{PAGE}action/", data)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    # A user with the permissions but no staff status is no admin user either.
    response = Browser("nonstaff", channel["password"]).get(PAGE)
    assert response.status_code == 302
    assert pids(live) == before


def test_staff_without_permission_get_403(
    site: None, channel: dict[str, str], live: Project
) -> None:
    before = pids(live)
    browser = Browser("staff", channel["password"])
    for url in READ_URLS:
        assert browser.get(url).status_code == 403, url
    for data in ACTIONS:
        assert browser.post(f"{PAGE}action/", data).status_code == 403
    assert pids(live) == before


def test_view_only_sees_the_table_but_cannot_act(
    site: None, channel: dict[str, str], live: Project
) -> None:
    from django.contrib.admin.models import LogEntry

    before = pids(live)
    browser = Browser("viewer", channel["password"])
    page = browser.get(PAGE)
    assert page.status_code == 200
    assert table_pids(page.body) == before
    assert 'value="restart"' not in page.body  # no buttons it could not use
    assert browser.get(f"{PAGE}log/sleeper/").status_code == 200
    entries = LogEntry.objects.count()
    for data in ACTIONS:
        assert browser.post(f"{PAGE}action/", data).status_code == 403
    assert (pids(live), LogEntry.objects.count()) == (before, entries)


def test_no_side_effect_on_get(site: None, channel: dict[str, str], live: Project) -> None:
    before = pids(live)
    browser = Browser("boss", channel["password"])
    response = browser.get(f"{PAGE}action/", {"action": "restart", "name": "sleeper"})
    assert response.status_code == 405
    assert pids(live) == before


def test_action_without_csrf_token_is_refused(
    site: None, channel: dict[str, str], live: Project
) -> None:
    from django.contrib.admin.models import LogEntry

    before = pids(live)
    entries = LogEntry.objects.count()
    browser = Browser("boss", channel["password"], enforce_csrf_checks=True)
    response = browser.post(f"{PAGE}action/", {"action": "restart", "name": "sleeper"})
    assert response.status_code == 403
    assert "CSRF" in response.body
    assert (pids(live), LogEntry.objects.count()) == (before, entries)


def test_restart_gives_a_new_pid_and_a_log_entry(
    site: None, channel: dict[str, str], live: Project
) -> None:
    from django.contrib.admin.models import CHANGE, LogEntry

    browser = Browser("boss", channel["password"], enforce_csrf_checks=True)
    page = browser.get(PAGE)
    before = table_pids(page.body)
    assert before == pids(live)
    token = browser.client.cookies["csrftoken"].value
    response = browser.post(
        f"{PAGE}action/", {"action": "restart", "name": "sleeper", "csrfmiddlewaretoken": token}
    )
    assert (response.status_code, response["Location"]) == (302, PAGE)
    after = table_pids(browser.get(f"{PAGE}table/").body)
    assert after["sleeper"] != before["sleeper"]
    assert after == pids(live)
    assert after["trapper"] == before["trapper"]
    entry = LogEntry.objects.latest("action_time")
    assert (entry.user.username, entry.object_id, entry.action_flag) == ("boss", "sleeper", CHANGE)
    assert entry.change_message == "restarted sleeper"
    # The message after the redirect, and the page's recent actions.
    page = browser.get(PAGE)
    assert "restarted sleeper" in page.body
    assert re.search(r"<strong>sleeper</strong>: restarted sleeper", page.body)


def test_supervisords_errors_become_messages(
    site: None, channel: dict[str, str], live: Project
) -> None:
    from django.contrib.admin.models import LogEntry

    browser = Browser("boss", channel["password"])
    response = browser.post(
        f"{PAGE}action/",
        {"action": "start", "name": "sleeper"},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200
    assert json.loads(response.body) == {
        "ok": False,
        "message": "start sleeper failed: sleeper: already started",
    }
    assert (
        LogEntry.objects.latest("action_time").change_message
        == json.loads(response.body)["message"]
    )
    response = browser.post(f"{PAGE}action/", {"action": "stop", "name": "ghost"}, follow=True)
    assert "stop ghost failed: no such process or group: ghost" in response.body
    bad = browser.post(f"{PAGE}action/", {"action": "signal", "name": "trapper", "signal": "NOPE"})
    assert bad.status_code == 400


def test_log_shows_a_line_printed_after_the_page_opened(
    site: None, channel: dict[str, str], live: Project
) -> None:
    browser = Browser("boss", channel["password"])
    page = browser.get(f"{PAGE}log/trapper/")
    assert page.status_code == 200
    assert "trapper started" in page.body
    offset = re.search(r'data-offset="(\d+)"', page.body)
    assert offset is not None
    seen = []

    def arrived() -> bool:
        tail = json.loads(browser.get(f"{PAGE}log/trapper/tail/?offset={offset[1]}").body)
        seen.append(tail["text"])
        return "trapper got SIGUSR1" in tail["text"]

    assert not arrived()
    live.manage("supervisor", "signal", "USR1", "trapper")
    wait_for(arrived, what=f"the new line in the log view; saw {seen[-1:]}")
    assert "trapper started" not in seen[-1]  # only what is new
    stderr = browser.get(f"{PAGE}log/sleeper/?stream=stderr")
    assert "sleeper stderr line" in stderr.body
    assert "sleeper started" not in stderr.body


def test_program_output_is_escaped(site: None, channel: dict[str, str], live: Project) -> None:
    browser = Browser("boss", channel["password"])
    page = browser.get(f"{PAGE}log/markup/")
    assert MARKUP not in page.body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; started" in page.body
    table = browser.get(f"{PAGE}table/").body
    assert MARKUP not in table  # the command line holds it too
    assert "&lt;script&gt;" in table


def test_download_is_the_whole_log(site: None, channel: dict[str, str], live: Project) -> None:
    browser = Browser("boss", channel["password"])
    response = browser.get(f"{PAGE}log/sleeper/download/?stream=stderr")
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="sleeper-stderr.log"'
    out, _, _ = live.manage("supervisor", "status", "--json", "sleeper")
    assert response.body == Path(json.loads(out)[0]["stderr_logfile"]).read_text()
    assert "sleeper stderr line" in response.body
    assert browser.get(f"{PAGE}log/ghost/").status_code == 404


def test_not_running_says_how_to_start(
    site: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUPERVISOR_SERVER_URL", f"unix://{tmp_path}/none.sock")
    monkeypatch.setenv("SUPERVISOR_USERNAME", "djsupervisor")
    monkeypatch.setenv("SUPERVISOR_PASSWORD", "not-in-any-page-0123456789abcdef")
    browser = Browser("boss", "not-in-any-page-0123456789abcdef")
    page = browser.get(PAGE)
    assert page.status_code == 200
    assert "supervisord is not running for this project" in page.body
    assert "python manage.py supervisor --daemonize" in page.body
    assert browser.get(f"{PAGE}log/sleeper/").status_code == 503
    response = browser.post(f"{PAGE}action/", {"action": "start", "name": "all"}, follow=True)
    assert "start all failed: supervisord is not running" in response.body


def test_wrong_password_never_shows_it(
    site: None, channel: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUPERVISOR_PASSWORD", "wrong-secret-0123456789abcdef")
    browser = Browser("boss", "wrong-secret-0123456789abcdef")
    page = browser.get(PAGE)
    assert "refused our credentials" in page.body
    assert channel["password"] not in page.body


def test_channel_from_settings(site: None, live: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside supervisord (runserver in a terminal) the settings give the channel."""
    for name in ("SUPERVISOR_SERVER_URL", "SUPERVISOR_USERNAME", "SUPERVISOR_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    with override_settings(SUPERVISOR_PROJECT_DIR=live.path, SECRET_KEY="integration-test-secret"):
        browser = Browser("boss", ctl_section(live)["password"])
        assert table_pids(browser.get(PAGE).body) == pids(live)


def test_admin_index_links_the_page(site: None, channel: dict[str, str]) -> None:
    browser = Browser("viewer", channel["password"])
    index = browser.get("/admin/")
    assert 'href="/admin/djsupervisor/programs/"' in index.body
    assert ">Programs<" in index.body
    response = browser.get("/admin/djsupervisor/programs/")
    assert (response.status_code, response["Location"]) == (302, PAGE)
    assert "Programs" not in Browser("staff", channel["password"]).get("/admin/").body


def test_stats_in_the_table_json_and_api(
    site: None, channel: dict[str, str], live: Project
) -> None:
    from djsupervisor.client.supervisor import Supervisor

    page = Browser("boss", channel["password"]).get(f"{PAGE}table/").body
    assert re.search(r'<td>\d+\.\d%</td>\s*<td class="djs-nowrap">\d+\.\d MiB</td>', page)
    infos = {
        i.name: i
        for i in Supervisor(channel["serverurl"], channel["username"], channel["password"]).status(
            stats=True
        )
    }
    sleeper_info = infos["sleeper"]
    assert sleeper_info.rss is not None and sleeper_info.rss > 1_000_000
    assert sleeper_info.cpu_percent is not None and sleeper_info.cpu_percent >= 0
    out, err, code = live.manage("supervisor", "status", "--json")
    records = {r["name"]: r for r in json.loads(out)}
    assert (err, code) == ("", 0)
    assert records["sleeper"]["rss"] > 1_000_000
    assert isinstance(records["sleeper"]["cpu_percent"], float)
    out, err, code = live.manage("supervisor", "status", "--stats")
    assert (err, code) == ("", 0)
    header, *lines = out.splitlines()
    assert header.split() == ["NAME", "STATE", "CPU", "RSS", "DESCRIPTION"]
    assert [line.split()[:2] for line in lines] == [
        ["markup", "RUNNING"],
        ["sleeper", "RUNNING"],
        ["trapper", "RUNNING"],
    ]
    assert all(re.fullmatch(r"\d+\.\d%", line.split()[2]) for line in lines)
    out, err, code = live.manage("supervisor", "--stats", "start", "sleeper")
    assert (out, err, code) == ("", "CommandError: --stats works with the status action only\n", 2)


def test_migrations_match_the_model(site: None) -> None:
    """No project (whatever its DEFAULT_AUTO_FIELD) is asked for a new migration."""
    with override_settings(DEFAULT_AUTO_FIELD="django.db.models.BigAutoField"):
        call_command("makemigrations", "djsupervisor", "--check", "--dry-run", verbosity=0)


def test_permissions_come_from_migrations(site: None) -> None:
    from django.contrib.auth.models import Permission

    codenames = Permission.objects.filter(content_type__app_label="djsupervisor")
    assert sorted(codenames.values_list("codename", flat=True)) == [
        "control_programs",
        "view_programs",
    ]
