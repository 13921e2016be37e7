"""The Storefence alerts page, in Chromium, on a real Airflow API server (``tests/ui/conftest.py``).

The page is the plugin's ``react_apps`` entry: Airflow lists it in its navigation and serves it at
``<base>/plugin/storefence``; it reads ``?tab=&shop=&domain=&rule=&severity=&q=&alert=`` from the URL
and the JSON API at ``<base>/storefence/api/...``, which reads the state store the seed wrote
(``tests/ui/seed.py``: 13 alerts, two shops, five domains). Each test starts from that seed.

What a person does, as a person does it: log in through Airflow's form, find the entry in the
menu, filter, acknowledge, silence, open an alert's chart; a viewer sees no write button and the
API refuses a write forced from the page. The screenshots in ``docs/images/`` are taken here.
"""

from __future__ import annotations

import re

import pytest

from tests.ui.conftest import API, PAGE_ROUTE, PHONE
from tests.ui.seed import severity_rank

pytestmark = [pytest.mark.real_airflow, pytest.mark.postgres, pytest.mark.slow]

CJK = re.compile(r"[\u4e00-\u9fff]")
WRITE_CONTROLS = ("ack-button", "ack-selected", "silence-button", "silence-save")


def expect(locator):
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def open_alerts(page, stack, **query):
    """The alerts page with ``query`` in its URL, once it has shown its data (``updated-at``)."""
    page.goto(stack.url(**query))
    expect(page.get_by_test_id("updated-at")).to_be_visible()
    return page


def rows(page):
    return page.get_by_test_id("alert-row")


def row(page, fingerprint: str):
    return page.locator(f'[data-testid="alert-row"][data-fingerprint="{fingerprint}"]')


def shown(page) -> list[str]:
    return [r.get_attribute("data-fingerprint") for r in rows(page).all()]


def expect_rows(page, alerts: dict) -> list[str]:
    """The list shows exactly ``alerts`` (name -> Alert); their fingerprints in the page's order."""
    expect(rows(page)).to_have_count(len(alerts))
    got = shown(page)
    assert sorted(got) == sorted(a.fingerprint for a in alerts.values()), (got, sorted(alerts))
    return got


def pick(seeded, *, status: str | None = None, **where) -> dict:
    """The seeded alerts with ``status`` whose spec has the given fields (shop, domain, rule_id, severity)."""
    out = {}
    for name, alert in seeded.alerts.items():
        spec = seeded.specs[name]
        if status is not None and str(alert.status) != status:
            continue
        if all(getattr(spec, k) == v for k, v in where.items()):
            out[name] = alert
    return out


def wait_for_store(check, what: str, timeout: float = 15):
    """Poll the state store until ``check()`` is true (the page's write reaches it through the API)."""
    import time

    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"the state store never showed {what} within {timeout:.0f} s")
        time.sleep(0.25)


def assert_red_first(page) -> list[str]:
    """Red first at every level the page shows: the list is grouped by domain, then by rule (the
    API sorts red first and the groups come in the order of their first alert), so the domains
    come worst first, each domain's rules worst first, each rule's rows red, yellow, blue. The
    rows' severities in the page's order."""
    tree = page.eval_on_selector_all('[data-testid="domain-group"]', """groups => groups.map(g =>
        [...g.querySelectorAll('[data-testid="rule-group"]')].map(r =>
            [...r.querySelectorAll('[data-testid="alert-row"]')].map(x => x.dataset.severity)))""")
    flat = [r.get_attribute("data-severity") for r in rows(page).all()]
    if not tree:  # not grouped: one list
        tree = [[flat]]
    assert [s for domain in tree for rule in domain for s in rule] == flat, (tree, flat)

    def worst(severities):
        return max(map(severity_rank, severities), default=0)

    def descending(ranks):
        return ranks == sorted(ranks, reverse=True)

    assert descending([worst([s for rule in domain for s in rule]) for domain in tree]), tree
    for domain in tree:
        assert descending([worst(rule) for rule in domain]), tree
        for rule in domain:
            assert descending([severity_rank(s) for s in rule]), tree
    return flat


def switch_language(page):
    """Use the page's language switch (a button that toggles, or a select)."""
    switch = page.get_by_test_id("lang-switch")
    if switch.evaluate("e => e.tagName") == "SELECT":
        current = switch.input_value()
        values = switch.locator("option").evaluate_all("os => os.map(o => o.value)")
        switch.select_option(next(v for v in values if v != current))
    else:
        switch.click()


# --- the menu ----------------------------------------------------------------------------------
def test_the_menu_entry_appears_in_airflows_nav(alerts_page_stack, seeded, browser, login):
    """Airflow's own navigation lists the plugin's page (``react_apps``, destination nav) and takes
    a person there."""
    stack = alerts_page_stack
    page = login(browser.new_page(), "admin", next_url=f"{stack.base}/")
    entry = page.locator(f'a[href$="/{PAGE_ROUTE}"]')
    plugins = page.get_by_role("button", name=re.compile("^plugins$", re.I))
    expect(entry.or_(plugins).first).to_be_visible()  # the nav has loaded the plugins' list
    if not entry.is_visible():  # two or more plugin pages: Airflow groups them under "Plugins"
        plugins.click()
    expect(entry).to_be_visible()
    expect(entry).to_have_accessible_name("Storefence alerts")
    entry.click()
    page.wait_for_url(f"**/{PAGE_ROUTE}")
    assert page.url.rstrip("/") == stack.page_url


# --- the list ----------------------------------------------------------------------------------
def test_rows_come_red_first(alerts_page_stack, seeded, browser, login):
    page = open_alerts(login(browser.new_page(), "admin"), alerts_page_stack)
    firing = pick(seeded, status="firing")
    order = expect_rows(page, firing)
    severities = assert_red_first(page)
    assert severities[0] == "red" and sorted(severities) == sorted(a.severity for a in firing.values())
    assert order[0] in {a.fingerprint for a in pick(seeded, status="firing", severity="red").values()}
    for colour in ("red", "yellow", "blue"):
        expect(page.get_by_test_id(f"count-{colour}")).to_contain_text(re.compile(r"\d"))


def test_a_filter_in_the_url_narrows_the_list(alerts_page_stack, seeded, browser, login):
    stack = alerts_page_stack
    page = login(browser.new_page(), "admin")
    cases = [
        ({"shop": "shop-02"}, pick(seeded, status="firing", shop="shop-02")),
        ({"domain": "inventory", "severity": "red"}, pick(seeded, status="firing", domain="inventory", severity="red")),
        ({"rule": "sales.order_drop"}, pick(seeded, status="firing", rule_id="sales.order_drop")),
        ({"q": "SKU-BEA-000050"}, {n: a for n, a in pick(seeded, status="firing").items()
                                   if "SKU-BEA-000050" in a.entity_key}),
        ({"tab": "resolved", "domain": "traffic"}, pick(seeded, status="resolved", domain="traffic")),
    ]
    everything = len(pick(seeded, status="firing"))
    for query, wanted in cases:
        assert wanted, query
        open_alerts(page, stack, **query)
        expect_rows(page, wanted)
        assert_red_first(page)
        if "tab" not in query:
            assert len(wanted) < everything, query
    open_alerts(page, stack)
    expect(rows(page)).to_have_count(everything)


def test_the_list_refreshes_itself_and_on_demand(alerts_page_stack, seeded, browser, login):
    """Every 30 s (the browser's clock, run forward here) and on the Refresh button, the page asks
    again: an alert that fired meanwhile appears, with the "updated at" of the new answer."""
    from datetime import timedelta

    from threshold_operators.alerting.lifecycle import Observation, transition

    stack = alerts_page_stack
    page = browser.new_page()
    page.clock.install()  # the page's timers run on a clock the test moves
    page = open_alerts(login(page, "admin"), stack)
    firing = len(pick(seeded, status="firing"))
    expect(rows(page)).to_have_count(firing)

    def fire(sku: str):
        obs = Observation("inventory.stock_cover", f"shop_id=shop-01/sku={sku}", "firing", "red",
                          seeded.now - timedelta(hours=1), seeded.now,
                          {"metric": "cover_days", "value": 1.2, "baseline": 9.0, "threshold": 3.0})
        alert = transition(None, obs, seeded.now).alert
        stack.store.save(alert)
        return alert

    first = fire("SKU-NEW-000001")
    expect(row(page, first.fingerprint)).to_have_count(0)  # not before the next refresh
    page.clock.run_for(31_000)
    expect(row(page, first.fingerprint)).to_have_count(1)
    expect(rows(page)).to_have_count(firing + 1)
    expect(page.get_by_test_id("updated-at")).to_be_visible()

    second = fire("SKU-NEW-000002")
    page.get_by_test_id("refresh").click()
    expect(row(page, second.fingerprint)).to_have_count(1)
    assert row(page, second.fingerprint).get_attribute("data-severity") == "red"


def test_without_a_login_the_page_leads_to_airflows_login_and_back(alerts_page_stack, seeded, browser, login):
    """A link to an alert (what an acknowledge link's page offers) opened before logging in: Airflow's
    login, then the same alert's detail."""
    stack = alerts_page_stack
    fp = seeded.fp("stock_cover_red")
    page = browser.new_page()
    page.goto(stack.url(alert=fp))
    page.wait_for_url(re.compile(r"/(auth/)?login"))
    assert "_token" not in {c["name"] for c in page.context.cookies(stack.base)}
    page.locator("input[name=username]").fill("admin")
    page.locator("input[name=password]").fill(stack.passwords["admin"])
    page.locator("form button[type=submit]").click()
    page.wait_for_url(re.compile(rf"/{PAGE_ROUTE}\?alert={fp}"))
    expect(page.get_by_test_id("metric-chart")).to_be_visible()


# --- writes --------------------------------------------------------------------------------------
def test_ack_changes_the_store_and_the_row(alerts_page_stack, seeded, browser, login):
    from threshold_operators.alerting.lifecycle import AlertStatus

    stack = alerts_page_stack
    fp = seeded.fp("order_drop_yellow")
    page = open_alerts(login(browser.new_page(), "admin"), stack)
    expect(rows(page)).to_have_count(len(pick(seeded, status="firing")))
    target = row(page, fp)
    target.get_by_test_id("ack-button").click()
    # the row is no longer one to acknowledge: its button is gone (or the row left the firing tab)
    expect(row(page, fp).get_by_test_id("ack-button")).to_have_count(0)

    def acknowledged():
        a = stack.store.get(fp)
        return a.status == AlertStatus.ACKNOWLEDGED and a.acknowledged_by == "admin"

    wait_for_store(acknowledged, "the alert acknowledged by admin")
    assert stack.store.get(fp).acknowledged_at is not None
    others = {n: a for n, a in seeded.alerts.items() if a.fingerprint != fp}
    assert {n: stack.store.get(a.fingerprint).status for n, a in others.items()} == {
        n: a.status for n, a in others.items()}  # nothing else changed

    open_alerts(page, stack)  # after a reload: left the firing tab...
    expect(rows(page)).to_have_count(len(pick(seeded, status="firing")) - 1)
    expect(row(page, fp)).to_have_count(0)
    open_alerts(page, stack, tab="acknowledged")  # ...for the acknowledged one
    expect(row(page, fp)).to_have_count(1)


def test_a_silence_from_an_alert_previews_its_matches_then_mutes_them(alerts_page_stack, seeded, browser, login):
    from threshold_operators.alerting.lifecycle import AlertStatus

    stack = alerts_page_stack
    name = "order_surge_blue"
    alert, spec = seeded.alerts[name], seeded.specs[name]
    sku = spec.entity["sku"]
    page = open_alerts(login(browser.new_page(), "admin"), stack)
    expect(rows(page)).to_have_count(len(pick(seeded, status="firing")))
    row(page, alert.fingerprint).get_by_test_id("silence-button").click()

    preview = page.get_by_test_id("silence-preview-row")
    expect(preview.first).to_be_visible()
    this_one = page.locator(f'[data-testid="silence-preview-row"][data-fingerprint="{alert.fingerprint}"]').or_(
        preview.filter(has_text=sku))
    expect(this_one).to_have_count(1)  # the alert it was made from is among its matches
    reason = page.get_by_role("textbox", name=re.compile("reason|原因", re.I))
    if reason.count():  # a reason may be asked for (the API wants one)
        reason.first.fill("补货在途 / restock on the way")
    page.get_by_test_id("silence-save").click()

    def silenced():
        made = [s for s in stack.store.silences(None) if s.author == "admin"]
        return made and stack.store.get(alert.fingerprint).status == AlertStatus.SILENCED

    wait_for_store(silenced, "a silence by admin and the alert silenced")
    made = next(s for s in stack.store.silences(None) if s.author == "admin")
    assert made.matches(alert.rule_id, alert.entity_key)
    assert made.id != seeded.silence.id
    # the muted tab shows it (with the seeded silenced alert); the firing tab no longer does
    open_alerts(page, stack, tab="muted")
    expect(row(page, alert.fingerprint)).to_have_count(1)
    expect(row(page, seeded.fp("review_burst_silenced"))).to_have_count(1)
    open_alerts(page, stack)
    expect(rows(page)).to_have_count(len(pick(seeded, status="firing")) - 1)
    expect(row(page, alert.fingerprint)).to_have_count(0)


# --- an alert's chart --------------------------------------------------------------------------
def test_an_alerts_chart_is_drawn_with_its_threshold_line(alerts_page_stack, seeded, browser, login):
    stack = alerts_page_stack
    fp = seeded.fp("stock_cover_red")
    page = open_alerts(login(browser.new_page(), "admin"), stack, alert=fp)
    chart = page.get_by_test_id("metric-chart")
    expect(chart).to_be_visible()
    line = chart.get_by_test_id("threshold-line")
    expect(line.first).to_be_attached()
    box, line_box = chart.bounding_box(), line.first.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 50, box
    assert line_box is not None, "the threshold line is not laid out"
    # inside the chart's box (a horizontal line: its y between the chart's top and bottom)
    assert box["y"] <= line_box["y"] <= box["y"] + box["height"], (box, line_box)


# --- a viewer ------------------------------------------------------------------------------------
def test_a_viewer_sees_no_write_buttons_and_a_forced_post_is_refused(alerts_page_stack, seeded, browser, login):
    from threshold_operators.alerting.lifecycle import AlertStatus

    stack = alerts_page_stack
    fp = seeded.fp("stock_cover_red")
    page = open_alerts(login(browser.new_page(), "viewer"), stack)
    expect(rows(page)).to_have_count(len(pick(seeded, status="firing")))  # the viewer reads the alerts
    for testid in WRITE_CONTROLS:
        expect(page.get_by_test_id(testid)).to_have_count(0)
    open_alerts(page, stack, alert=fp)  # an alert's detail: no write control either
    expect(page.get_by_test_id("metric-chart")).to_be_visible()
    for testid in (*WRITE_CONTROLS, "detail-ack-button", "detail-silence-button"):
        expect(page.get_by_test_id(testid)).to_have_count(0)

    # the same requests the buttons would make, forced from the page with the viewer's cookie
    forced = page.evaluate("""async ([base, fp]) => {
        const post = async (path, body) => {
            const r = await fetch(`${base}/${path}`, {method: "POST", credentials: "same-origin",
                headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
            return [path, r.status, await r.text()];
        };
        return [await post("storefence/api/alerts/ack", {fingerprints: [fp]}),
                await post(`storefence/api/alerts/${fp}/ack`, {}),
                await post("storefence/api/silences", {rule: "*", reason: "forced", duration: "1h"})];
    }""", [stack.base, fp])
    for path, status, body in forced:
        assert status == 403, (path, status, body)
    assert forced[0][0] == f"{API}/alerts/ack"
    assert stack.store.get(fp).status == AlertStatus.FIRING and stack.store.get(fp).acknowledged_by is None
    assert [s.id for s in stack.store.silences(None)] == [seeded.silence.id]


# --- languages ---------------------------------------------------------------------------------
def test_who_holds_an_alert_is_named_in_the_pages_language(alerts_page_stack, seeded, browser, login):
    """routing.yaml names each person in Chinese and English: the English page says who holds an
    alert by the English names, the Chinese page by the Chinese ones, in the row and the detail."""
    from threshold_operators.alerting.routing import load_routing

    stack = alerts_page_stack
    fp = seeded.fp("stock_cover_red")  # level 2 of purchasing: its supervisor
    name = load_routing().people["zhao.lei"].name
    page = open_alerts(login(browser.new_page(lang="en-US"), "admin"), stack)
    expect(row(page, fp).get_by_test_id("alert-held-by")).to_have_text(f"held by {name.en}")
    held = rows(page).get_by_test_id("alert-held-by").all_inner_texts()
    assert held and not any(CJK.search(text) for text in held), held
    open_alerts(page, stack, alert=fp)
    expect(page.get_by_test_id("detail-escalation")).to_contain_text(f"held by {name.en}")

    page = open_alerts(page, stack)
    switch_language(page)  # the page's own switch: Chinese
    expect(row(page, fp).get_by_test_id("alert-held-by")).to_have_text(f"处理人：{name.zh}")
    zh = open_alerts(login(browser.new_page(lang="zh-CN"), "admin"), stack, alert=fp)  # Airflow in Chinese
    expect(zh.get_by_test_id("detail-escalation")).to_contain_text(f"处理人：{name.zh}")


def test_the_pages_language_is_kept_across_navigation_and_reloads(alerts_page_stack, seeded, browser, login):
    """Airflow mounts the page again on every navigation inside it (a row's Details) and on a
    reload: the switch's choice is remembered (localStorage, with Airflow's language it was made
    under), so the page and the drawer stay Chinese; Airflow's own language changed later wins."""
    from threshold_operators.alerting.routing import load_routing

    stack = alerts_page_stack
    fp = seeded.fp("stock_cover_red")
    name = load_routing().people["zhao.lei"].name
    page = open_alerts(login(browser.new_page(lang="en-US"), "admin"), stack)
    lang = page.get_by_test_id("lang-switch")
    expect(lang).to_have_attribute("data-lang", "en")
    switch_language(page)  # the page's own switch: Chinese
    expect(lang).to_have_attribute("data-lang", "zh")

    def still_chinese():
        expect(lang).to_have_attribute("data-lang", "zh")
        expect(page.get_by_test_id("tab-firing")).to_have_text(CJK)
        drawer = page.get_by_test_id("alert-detail")
        expect(drawer).to_have_attribute("data-fingerprint", fp)
        expect(drawer.get_by_test_id("detail-escalation")).to_contain_text(f"处理人：{name.zh}")

    row(page, fp).get_by_test_id("details-link").click()  # a navigation inside the page
    page.wait_for_url(re.compile(rf"[?&]alert={fp}"))
    still_chinese()
    page.reload()
    expect(page.get_by_test_id("updated-at")).to_be_visible()
    still_chinese()

    # Airflow's language changed since (its user menu writes i18nextLng): Airflow's (German: en) wins
    page.evaluate("localStorage.setItem('i18nextLng', 'de')")
    open_alerts(page, stack, alert=fp)
    expect(lang).to_have_attribute("data-lang", "en")
    expect(page.get_by_test_id("detail-escalation")).to_contain_text(f"held by {name.en}")


# --- screenshots (docs/images) -----------------------------------------------------------------
def test_screenshots_of_the_page(alerts_page_stack, seeded, browser, login, screenshot):
    """The page on a desktop and a phone, an alert's detail with its chart, in English and Chinese:
    docs/images/alerts-page.png, alerts-page-zh.png, alerts-page-phone.png, alerts-detail.png,
    alerts-detail-zh.png."""
    from datetime import timedelta

    stack = alerts_page_stack
    firing = len(pick(seeded, status="firing"))
    fp = seeded.fp("stock_cover_red")
    shot_at = seeded.now + timedelta(minutes=5)  # the browser's clock: "started 2 hours ago" in every run

    def new_page(**options):
        page = browser.new_page(**options)
        page.clock.set_fixed_time(shot_at)
        return page

    page = open_alerts(login(new_page(lang="en-US"), "admin"), stack)
    expect(rows(page)).to_have_count(firing)
    english = page.get_by_test_id("tab-firing").inner_text()
    assert not CJK.search(english), english
    screenshot(page, "alerts-page")
    open_alerts(page, stack, alert=fp)
    expect(page.get_by_test_id("metric-chart")).to_be_visible()
    screenshot(page, "alerts-detail")

    # Chinese: the language switch turns the page's words Chinese
    open_alerts(page, stack)
    switch_language(page)
    expect(page.get_by_test_id("tab-firing")).to_have_text(CJK)
    expect(rows(page)).to_have_count(firing)
    screenshot(page, "alerts-page-zh")

    # a Chinese browser (Airflow follows its language) on the detail
    zh = open_alerts(login(new_page(lang="zh-CN"), "admin"), stack, alert=fp)
    if not CJK.search(zh.get_by_test_id("tab-firing").inner_text()):
        switch_language(zh)
    expect(zh.get_by_test_id("tab-firing")).to_have_text(CJK)
    expect(zh.get_by_test_id("metric-chart")).to_be_visible()
    screenshot(zh, "alerts-detail-zh")

    phone = open_alerts(login(new_page(phone=True), "admin"), stack)
    expect(rows(phone)).to_have_count(firing)
    assert phone.viewport_size == PHONE
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"] + 1, f"the page scrolls sideways on a phone ({width} px wide)"
    screenshot(phone, "alerts-page-phone")
