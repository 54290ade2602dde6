"""The Programs page in a real browser: headless Chromium on a real project's web program.

Needs Debian's ``chromium`` and ``chromium-driver`` and selenium (``.[browser-test]``);
``.ci/run``'s live job installs them. Set ``DJSUPERVISOR_SCREENSHOT=PATH`` to keep a
screenshot of the page (the README's is made so).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.utils import ADMIN_APP_SETTINGS, Project, make_project, program, sleeper, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("selenium") is None,
        reason="selenium is not installed (pip install -e '.[browser-test]')",
    ),
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="chromium and chromedriver are not installed (apt-get install chromium "
        "chromium-driver)",
    ),
]

SETTINGS = "".join(f"{name} = {value!r}\n" for name, value in ADMIN_APP_SETTINGS.items()) + (
    'ROOT_URLCONF = "testproj.urls"\n'
    'STATIC_URL = "/static/"\n'
    'ALLOWED_HOSTS = ["127.0.0.1"]\n'
    'DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"\n'
)
URLS = """
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/supervisor/", include("djsupervisor.urls")),
    path("admin/", admin.site.urls),
]
"""
MAKE_USER = """
from django.contrib.auth.models import Permission, User
user = User.objects.create_user("boss", password="pw", is_staff=True)
user.user_permissions.set(
    Permission.objects.filter(codename__in=["view_programs", "control_programs"])
)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Project]]:
    """A project whose web program serves the admin; yield its URL and the project."""
    port = free_port()
    proj: Project = make_project(
        tmp_path / "proj",
        f"""
        [program:web]
        command={{{{ PYTHON }}}} {{{{ PROJECT_DIR }}}}/manage.py runserver 127.0.0.1:{port}
            --noreload --insecure
        startsecs=0
        stopasgroup=true
        [program:trapper]
        command={program("trapper.py", "trapper", "USR1=report")}
        startsecs=0
        [program:worker]
        command={sleeper("worker")}
        startsecs=0
        [program:nightly]
        command={sleeper("nightly")}
        autostart=false
        """,
        extra_settings=SETTINGS,
    )
    proj.write("testproj/urls.py", URLS)
    try:
        for args in (("migrate", "-v0"), ("shell", "-c", MAKE_USER)):
            _, err, code = proj.manage(*args)
            assert code == 0, err
        proj.start()
        proj.wait_running("web", "trapper", "worker")
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/admin/login/", timeout=2):
                    return True
            except OSError:
                return False

        wait_for(answers, what="the web program")
        yield url, proj
    finally:
        proj.cleanup()


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,800")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def pid_of(driver: Any, name: str) -> str:
    """The pid the table shows (read in one go: the refresh replaces the rows)."""
    script = "const r = document.querySelector(`tr[data-name='${arguments[0]}']`);"
    return str(driver.execute_script(script + " return r ? r.dataset.pid : '';", name))


def test_restart_and_follow_the_log(
    site: tuple[str, Project], browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{site[0]}/admin/login/?next=/admin/supervisor/")
    browser.find_element(By.NAME, "username").send_keys("boss")
    browser.find_element(By.NAME, "password").send_keys("pw")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.ID, "djs-table"))
    old = pid_of(browser, "trapper")
    assert old.isdigit()
    browser.execute_script("window.djsSamePage = true;")  # gone if the page reloads
    browser.find_element(By.CSS_SELECTOR, 'tr[data-name="trapper"] button[value="restart"]').click()
    WebDriverWait(browser, 30).until(lambda d: pid_of(d, "trapper") not in ("", old))
    assert browser.execute_script("return window.djsSamePage === true;")
    messages = browser.find_element(By.CSS_SELECTOR, "ul.messagelist").text
    assert "restarted trapper" in messages
    browser.refresh()
    recent = browser.find_element(By.ID, "recent-actions-module").text
    assert "trapper: restarted trapper" in recent
    shot = tmp_path / "admin-page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("DJSUPERVISOR_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["DJSUPERVISOR_SCREENSHOT"])

    browser.find_element(By.CSS_SELECTOR, 'tr[data-name="trapper"] a').click()
    log = WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "djs-log"))
    assert "trapper started" in log.text
    assert "trapper got SIGUSR1" not in log.text
    _, err, code = site[1].manage("supervisor", "signal", "USR1", "trapper")
    assert code == 0, err
    WebDriverWait(browser, 20).until(lambda d: "trapper got SIGUSR1" in log.text)
