"""The alerts page in a real browser, on a real Airflow API server.

- ``alerts_page_stack`` (module): ``tests/harness`` starts Airflow's own processes on a fresh home
  and a PostgreSQL metadata DB of its own: the API server (the UI, the plugin's page and its JSON
  API), and the scheduler only because the harness waits for its health. The page needs no DAGs:
  ``prepare`` points the deployment at an empty DAG folder and drops the DAG processor, so the start
  does not wait for the pack's DAG files to be parsed. Users: ``admin`` (Admin) and ``viewer``
  (Viewer), their passwords from the simple auth manager's generated file. The state store is the
  SQLite file ``storefence-state.sqlite`` of the home, named by the ``storefence_state``
  connection (``AIRFLOW_CONN_STOREFENCE_STATE``), the one the API server reads.
- ``seeded`` (each test): the state store emptied and written again by ``tests/ui/seed.py``, so a
  test that acknowledges or silences never changes what the next one sees.
- ``browser``: Debian's Chromium (``/usr/bin/chromium``, ``make system-packages``) driven by
  Playwright, headless, ``--no-sandbox``; ``browser.new_page(lang=..., viewport=...)`` opens a
  context of its own (locale and ``Accept-Language``), closed after the test. No browser is ever
  downloaded. Without Chromium (or Playwright) the tests skip, and fail under ``CI=true``.
- ``login(page, user)``: through Airflow's own login form (the simple auth manager's
  ``/auth/login``), which sets the ``_token`` cookie as for a person.
- ``screenshot(page, name)``: ``<name>.png`` in the test's temporary folder; with
  ``STOREFENCE_UPDATE_SCREENSHOTS=1``, ``docs/images/<name>.png`` (the docs' pictures, rewritten
  on purpose: look at them before committing), so a test run leaves the checkout as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import IN_CI, PG_ADMIN_URL, REPO

CHROMIUM = os.environ.get("STOREFENCE_CHROMIUM", "/usr/bin/chromium")
IMAGES = REPO / "docs" / "images"
USERS = {"admin": "admin", "viewer": "viewer"}  # user -> SimpleAuthManager role
STATE_FILE = "storefence-state.sqlite"
PAGE_ROUTE = "plugin/storefence"  # Airflow's UI serves a react_apps entry at <base>/plugin/<url_route>
API = "storefence/api"
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 20_000  # a small, busy CI machine


def _browser_missing(reason: str):
    if IN_CI:
        pytest.fail(f"the alerts page tests need a browser under CI=true: {reason}. `make test` installs Chromium "
                    f"(make system-packages: Debian's chromium, chromium-driver, fonts-noto-cjk) and Playwright "
                    f"(requirements.txt)")
    pytest.skip(f"no browser for the alerts page tests: {reason} (make system-packages installs it, as root)")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary, checked before any Airflow starts."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        _browser_missing(f"Playwright is not installed ({exc})")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _browser_missing(f"{CHROMIUM} not found")
    return CHROMIUM


# --- the deployment ------------------------------------------------------------------------------
@dataclass
class AlertsPageStack:
    base: str  # the API server, http://127.0.0.1:<port>
    home: Path
    passwords: dict[str, str]
    state_path: Path
    deployment: object  # tests.harness.airflow_stack.AirflowDeployment
    seconds_to_start: float
    _store: object = field(default=None, repr=False)

    @property
    def page_url(self) -> str:
        return f"{self.base}/{PAGE_ROUTE}"

    def url(self, **query) -> str:
        """The page with ``?tab=&shop=&domain=&rule=&severity=&q=&alert=`` (empty ones left out)."""
        params = "&".join(f"{k}={quote(str(v))}" for k, v in query.items() if v not in (None, ""))
        return self.page_url + (f"?{params}" if params else "")

    @property
    def store(self):
        """The state store the API server reads (the same SQLite file), for the tests to read."""
        if self._store is None:
            from threshold_operators.alerting.store import StateStore

            self._store = StateStore(url=f"sqlite:///{self.state_path}")
        return self._store


@contextmanager
def alerts_page_airflow(root: Path, seed=None) -> Iterator[AlertsPageStack]:
    """A real Airflow API server (and the scheduler its health check needs) with the plugin, two
    users and the state store ``seed(store)`` wrote (None: empty), under ``root``. The browser tests'
    fixture and the page's benchmark (``bench/alerts_page.py``) both start it."""
    from tests.harness.airflow_stack import running_airflow
    from threshold_operators.alerting.store import StateStore
    from threshold_operators.deploy.stack import PASSWORDS_FILE

    home, no_dags = root / "airflow", root / "no-dags"
    no_dags.mkdir()
    state = home / STATE_FILE

    def prepare(stack):
        store = StateStore(url=f"sqlite:///{state}")
        store.create()  # airflow-setup made it already (the connection names this file); idempotent
        if seed is not None:
            seed(store)
        store.engine.dispose()
        # The harness waits until every file of the DAG folder is parsed (by the DAG processor,
        # which this stack does not run); the page needs no DAG: an empty folder. The harness
        # waits on this same config object.
        stack.config.dags_folder = no_dags

    t0 = time.monotonic()
    with running_airflow(
            home, PG_ADMIN_URL, components=("api-server", "scheduler"),  # the harness waits for the scheduler's health
            extra_config={("core", "simple_auth_manager_users"): ",".join(f"{u}:{r}" for u, r in USERS.items())},
            extra_env={"AIRFLOW_CONN_STOREFENCE_STATE": json.dumps({"conn_type": "sqlite", "host": str(state)})},
            prepare=prepare) as deployment:
        # the API server generated the passwords of the users the file did not have (the viewer)
        passwords = json.loads((home / PASSWORDS_FILE).read_text(encoding="utf-8"))
        missing = set(USERS) - set(passwords)
        assert not missing, f"no generated password for {missing} in {home / PASSWORDS_FILE}"
        stack = AlertsPageStack(deployment.stack.config.api_url, home, passwords, state, deployment,
                                time.monotonic() - t0)
        try:
            yield stack
        finally:
            if stack._store is not None:
                stack._store.engine.dispose()


@pytest.fixture(scope="module")
def alerts_page_stack(chromium, pg_server, tmp_path_factory):
    """The API server of ``alerts_page_airflow`` with the seed's state store, for a test module."""
    from .seed import seed_state_store

    with alerts_page_airflow(tmp_path_factory.mktemp("alerts-page"),
                             lambda store: seed_state_store(store, server_hour())) as stack:
        yield stack


def server_hour():
    """The seed's "now": the API server's own clock (a process of its own, which the test cannot
    pin), to the hour. The API shows what is resolved in the last 7 days of ITS clock, so the seed
    is written relative to it: every test passes on any date and at any hour."""
    from datetime import UTC, datetime

    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def seeded(alerts_page_stack):
    """The state store as the seed has it, written again for this test."""
    from .seed import clear_state_store, seed_state_store

    store = alerts_page_stack.store
    clear_state_store(store)
    return seed_state_store(store, server_hour())


# --- the browser ---------------------------------------------------------------------------------
class Browser:
    """Chromium through Playwright; each ``new_page`` has a context (cookies, locale) of its own."""

    def __init__(self, browser):
        self.browser = browser
        self.contexts = []

    def new_page(self, lang: str = "en-US", viewport: dict | None = None, phone: bool = False,
                 timezone: str = "Asia/Shanghai"):
        """A page in a new context: ``lang`` as the browser's locale and Accept-Language
        (``zh-CN``: Chinese), ``viewport`` (default desktop; ``phone=True``: a phone's, touch, 2x)."""
        options = {"locale": lang, "timezone_id": timezone, "extra_http_headers": {"Accept-Language": lang},
                   "viewport": viewport or (PHONE if phone else DESKTOP)}
        if phone:
            options |= {"is_mobile": True, "has_touch": True, "device_scale_factor": 2}
        context = self.browser.new_context(**options)
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS * 3)
        self.contexts.append(context)
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())  # a confirm() before a write: yes
        return page

    def close_contexts(self):
        while self.contexts:
            self.contexts.pop().close()


@pytest.fixture(scope="session")
def _chromium_browser(chromium):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage", "--font-render-hinting=none"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser(_chromium_browser):
    b = Browser(_chromium_browser)
    try:
        yield b
    finally:
        b.close_contexts()


@pytest.fixture
def login(alerts_page_stack):
    """``login(page, user, password=None)``: sign in through Airflow's login form (the simple auth
    manager's), then land on ``next`` (default: the alerts page). The password defaults to the
    user's generated one."""

    def sign_in(page, user: str, password: str | None = None, next_url: str | None = None):
        stack = alerts_page_stack
        target = next_url or stack.page_url
        page.goto(f"{stack.base}/auth/login?next={quote(target, safe='')}")
        page.locator("input[name=username]").fill(user)
        page.locator("input[name=password]").fill(password if password is not None else stack.passwords[user])
        page.locator("form button[type=submit]").click()
        page.wait_for_url(lambda url: "/auth/login" not in url)
        cookies = {c["name"] for c in page.context.cookies(stack.base)}
        assert "_token" in cookies, f"no _token cookie after logging in as {user}: {sorted(cookies)}"
        return page

    return sign_in


def _cjk_fonts() -> bool:
    import subprocess

    if not shutil.which("fc-list"):
        return False
    listed = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=30)
    return bool(listed.stdout.strip())


@pytest.fixture
def screenshot(chromium, tmp_path):
    """``screenshot(page, name)``: the page as ``<name>.png`` once it has settled (fonts loaded, no
    animation, no caret); the path. In the test's temporary folder, or in ``docs/images/`` with
    ``STOREFENCE_UPDATE_SCREENSHOTS=1``. Needs a Chinese font (fonts-noto-cjk), or the Chinese
    screenshots would show boxes."""
    if not _cjk_fonts():
        _browser_missing("no Chinese font (fc-list :lang=zh is empty; Debian: fonts-noto-cjk)")
    folder = IMAGES if os.environ.get("STOREFENCE_UPDATE_SCREENSHOTS") == "1" else tmp_path

    def take(page, name: str, full_page: bool = False) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        page.wait_for_load_state("networkidle")
        page.evaluate("document.fonts.ready.then(() => true)")
        path = folder / f"{name}.png"
        tmp = path.with_suffix(".tmp.png")
        page.screenshot(path=str(tmp), full_page=full_page, animations="disabled", caret="hide")
        shutil.move(tmp, path)
        return path

    return take
