"""The reviewer's console in a real headless Chromium, on SQLite and PostgreSQL: sign in by
name, create an experiment, watch traffic posted through the API arrive, work a queue of
20 proposals with the keyboard only, suspend and restore an arm, download the learnings.
Every page is checked with axe-core and kept as a screenshot under test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from service.console.auth import COOKIE
from service.console.auth import sign_in as make_session
from service.core.runtime import Runtime
from service.core.settings import Settings
from service.models import utcnow
from simulation.copywriter import read_data_block
from simulation.copywriter_server import CopywriterControl
from tests.browser import OfflinePage
from tests.console.helpers import Counter, check_page, screenshot, sign_in
from tests.service.helpers import later
from tests.service.loop_fixtures import (
    BANNED,
    llm_settings,
    pending,
    run_loop,
    seed_experiment,
    serve_copywriter,
)

REVIEWER = "Dana Reviewer"
PASS_SIZE = 20
# A reviewer's own wordings, each unlike the others (the edit is checked for duplicates).
EDITS = [
    "Which jacket goes with you this April?",
    "Rain boots or sandals: what is your spring?",
    "Still dreaming of linen shirts?",
    "Picnic season: is your basket ready?",
    "Got a wedding to dress for this May?",
]


@pytest.fixture(scope="module")
def copywriter_server() -> Iterator[tuple[str, CopywriterControl]]:
    yield from serve_copywriter()


@pytest.fixture
def copywriter(copywriter_server: tuple[str, CopywriterControl]) -> CopywriterControl:
    copywriter_server[1].reset()
    return copywriter_server[1]


@pytest.fixture
def settings(settings: Settings, copywriter_server: tuple[str, CopywriterControl]) -> Settings:
    # Ten variants a run: two runs fill a queue of twenty.
    return llm_settings(settings, copywriter_server[0], loop_max_new_variants=10)


@pytest.fixture
def database(settings: Settings) -> str:
    return "sqlite" if settings.database_url.startswith("sqlite") else "postgres"


@pytest.fixture
def reviewer_key(runtime: Runtime) -> str:
    _row, raw = runtime.api_keys.create(name="console reviewer", scopes=["review"])
    return raw


def _publish(runtime: Runtime) -> None:
    runtime.decision_log.flush()
    runtime.refresher.recompute_all(now=later())
    runtime.refresher.reload()


def test_create_experiment_watch_traffic_suspend_restore_download(
    live_server: str,
    offline_page: OfflinePage,
    runtime: Runtime,
    reviewer_key: str,
    decide: dict[str, str],
    ingest: dict[str, str],
    database: str,
) -> None:
    page = offline_page.page
    page.goto(f"{live_server}/console/experiments")
    assert "/console/sign-in" in page.url  # no session: sent to sign in
    check_page(page, "sign-in", database)
    sign_in(page, live_server, name=REVIEWER, key=reviewer_key)
    assert page.get_by_text("No experiment yet").is_visible()
    check_page(page, "experiments-empty", database)

    # Create an experiment through its form; a mistake comes back inline first.
    page.click("text=New experiment")
    assert page.input_value("#f-exploration_share") == "0.1"  # the defaults, shown
    page.fill("#f-key", "spring-sale")
    page.fill("#f-name", "Spring sale subject lines")
    page.fill("#f-arms", "Our spring sale starts today\nReady for the spring sale?")
    page.fill("#f-audience", "lapsed shoppers")
    page.fill("#f-goal", "clicks to the sale page")
    page.fill("#f-brand_voice", "warm, plain")
    page.fill("#f-exploration_share", "1.5")
    page.fill("#f-min_exposures", "100")
    page.fill("#f-banned_phrases", BANNED)
    page.evaluate("document.querySelector('#f-exploration_share').removeAttribute('max')")
    check_page(page, "experiment-new", database)
    page.click("text=Create experiment")
    assert page.locator("#e-exploration_share").is_visible()
    assert page.locator("#f-exploration_share").get_attribute("aria-invalid") == "true"
    page.fill("#f-exploration_share", "0.1")
    page.click("text=Create experiment")
    page.wait_for_url(re.compile(r".*/console/experiments/spring-sale\?notice=.*"))
    assert page.get_by_text("No traffic yet").is_visible()

    # Traffic through the API, as a sender and an ESP would post it.
    api = httpx.Client(base_url=live_server, timeout=30)
    experiment = api.get(
        "/v1/experiments/spring-sale", headers={"Authorization": f"Bearer {reviewer_key}"}
    ).json()
    control, challenger = (arm["id"] for arm in experiment["arms"])
    for round_ in range(3):
        decisions = api.post(
            "/v1/choose/batch",
            json={
                "experiment": "spring-sale",
                "units": [{"unit_id": f"r{round_}-u{i}"} for i in range(400)],
            },
            headers=decide,
        ).json()["decisions"]
        runtime.decision_log.flush()
        events = [
            {
                "event_id": f"c-{d['decision_id'][-16:]}",
                "decision_id": d["decision_id"],
                "type": "click",
            }
            for i, d in enumerate(decisions)
            if (d["arm"]["id"] == challenger and i % 8 == 0)
            or (d["arm"]["id"] == control and i % 25 == 0)
        ]
        assert api.post("/v1/events", json=events, headers=ingest).status_code == 200
        _publish(runtime)
    page.reload()
    leader = page.locator(".leader").inner_text()
    assert leader.startswith("“Ready for the spring sale?” leads:"), leader
    assert "for the control" in leader
    assert "likely best" in leader
    row = page.locator(f"#arm-{challenger}")
    assert int(row.locator("td").nth(1).inner_text().replace(",", "")) > 300
    assert page.locator("svg.chart").count() == 3  # traffic share, estimated and observed rate
    check_page(page, "experiment", database)

    page.goto(f"{live_server}/console/experiments")
    assert "Ready for the spring sale?" in page.locator(".leader").inner_text()
    check_page(page, "experiments", database)

    # Suspend and restore the control, each with a reason; the history names the person.
    page.goto(f"{live_server}/console/experiments/spring-sale")
    page.click(f"#arm-{control} + tr button:text('Suspend')")  # no reason: the browser asks
    assert page.url.endswith("/console/experiments/spring-sale")
    page.fill(f"#reason-{control}", "legal is checking the wording")
    page.click(f"#arm-{control} + tr button:text('Suspend')")
    page.wait_for_selector(".notice")
    assert page.locator(f"#arm-{control} td").first.inner_text() == "suspended"
    served = api.post(
        "/v1/choose/batch",
        json={"experiment": "spring-sale", "units": [{} for _ in range(200)]},
        headers=decide,
    ).json()["decisions"]
    assert {d["arm"]["id"] for d in served} == {challenger}
    page.goto(f"{live_server}/console/experiments")
    assert "Our spring sale starts today" in page.locator(".facts").inner_text()  # suspended
    page.goto(f"{live_server}/console/experiments/spring-sale")
    page.fill(f"#reason-{control}", "legal approved it")
    page.click(f"#arm-{control} + tr button:text('Restore')")
    page.wait_for_selector(".notice")
    assert page.locator(f"#arm-{control} td").first.inner_text() == "live"
    page.click(f"#arm-{control} + tr summary")
    history = page.locator(f"#arm-{control} + tr .history").inner_text()
    assert f"live → suspended by {REVIEWER}: legal is checking the wording" in history
    assert f"suspended → live by {REVIEWER}: legal approved it" in history
    page.click("text=Who created it")
    assert f"created by {REVIEWER}" in page.locator("details .history").last.inner_text()

    # The learnings page, and its Markdown download.
    page.goto(f"{live_server}/console/experiments/spring-sale/learnings")
    check_page(page, "learnings-empty", database)
    with page.expect_download() as download:
        page.click("text=Download as Markdown")
    assert download.value.suggested_filename == "spring-sale-learnings.md"
    text = open(download.value.path(), encoding="utf-8").read()
    assert text.startswith("# ")

    # A person's arm obeys the content rules too: the banned phrase is refused, named.
    page.goto(f"{live_server}/console/experiments/spring-sale")
    page.fill("#new-content", f"Spring sale, {BANNED} savings")
    page.click("text=Add and go live")
    assert BANNED in page.locator(".error").inner_text()
    assert offline_page.blocked == []
    assert _errors(offline_page) == []


def _errors(offline_page: OfflinePage) -> list[str]:
    # Forms answered 422 on purpose (a mistake shown inline) are not script errors.
    return [e for e in offline_page.console_errors if "status of 422" not in e]


def test_twenty_proposals_with_the_keyboard_only(
    live_server: str,
    offline_page: OfflinePage,
    client: TestClient,
    admin: dict[str, str],
    decide: dict[str, str],
    ingest: dict[str, str],
    runtime: Runtime,
    copywriter: CopywriterControl,
    reviewer_key: str,
    database: str,
) -> None:
    seed_experiment(client, admin, decide, ingest, runtime, max_live_arms=40)
    while len(pending(client, admin, "spring")) < PASS_SIZE:
        run = run_loop(client, admin, "spring")
        assert run["status"] == "succeeded", run
    queue = pending(client, admin, "spring")[:PASS_SIZE]
    page = offline_page.page
    sign_in(page, live_server, name=REVIEWER, key=reviewer_key)
    page.goto(f"{live_server}/console/review?experiment=spring")
    check_page(page, "review", database)
    counter = Counter(page)  # counts from here: the pass itself

    edited: dict[int, str] = {}
    rejected: dict[int, str] = {}
    approved: list[int] = []
    for i, proposal in enumerate(queue):
        title = page.locator("#proposal-title")
        assert title.inner_text().startswith(f"Proposal {proposal['id']} "), title.inner_text()
        if i % 4 == 1:
            if i == 1:
                # A first edit that breaks a rule: refused inline, the edit kept, then fixed.
                counter.press("e")
                counter.type(f"Spring is {BANNED} to please")
                counter.press("Control+Enter")
                page.wait_for_selector("[data-error]")
                assert BANNED in page.locator("#approve-error").inner_text()
                assert page.evaluate("document.activeElement.id") == "edit-content"
                counter.press("Control+a")
            else:
                counter.press("e")
            wording = EDITS[i // 4]
            counter.type(wording)
            counter.press("Control+Enter")
            edited[proposal["id"]] = wording
        elif i % 4 == 3:
            reason = f"too close to the brand's old line {i}"
            counter.press("r")
            counter.type(reason)
            counter.press("Enter")
            rejected[proposal["id"]] = reason
        else:
            counter.press("a")
            approved.append(proposal["id"])
        page.wait_for_selector(f"[data-notice]:has-text('proposal {proposal['id']}')")
        if i == 0:
            screenshot(page, "review-after-approve", database)
    remaining = PASS_SIZE - len(queue)
    assert counter.loads == 0, counter.log  # the whole pass without a page load
    decided = {
        p["id"]: p
        for p in client.get("/v1/proposals", params={"experiment": "spring"}, headers=admin).json()[
            "proposals"
        ]
    }
    for pid in approved:
        assert decided[pid]["status"] == "approved"
        assert decided[pid]["decided_by"] == REVIEWER
    for pid, wording in edited.items():
        assert decided[pid]["status"] == "approved"
        assert decided[pid]["edited_content"] == wording
    for pid, reason in rejected.items():
        assert decided[pid]["status"] == "rejected"
        assert decided[pid]["reason"] == reason
    arms = {
        a["content"]: a for a in client.get("/v1/experiments/spring", headers=admin).json()["arms"]
    }
    for wording in edited.values():
        assert arms[wording]["status"] == "live"  # the edit is live, as typed
    # The rejection reasons are fed to the next run.
    run_loop(client, admin, "spring")
    fed = read_data_block(copywriter.last_request)["rejected_variants"]
    for pid, reason in rejected.items():
        assert {"content": decided[pid]["content"], "reason": reason} in fed
    keystrokes = counter.keys
    print(
        f"\n20-proposal pass ({database}): {keystrokes} keystrokes "
        f"({keystrokes - counter.typed} shortcut keys, {counter.typed} typed characters), "
        f"{counter.loads} page loads after the queue's first"
    )
    assert remaining == 0
    assert keystrokes - counter.typed <= 2 * PASS_SIZE
    assert _errors(offline_page) == []


def test_loop_runs_page_runs_the_loop_with_progress(
    live_server: str,
    offline_page: OfflinePage,
    client: TestClient,
    admin: dict[str, str],
    decide: dict[str, str],
    ingest: dict[str, str],
    runtime: Runtime,
    copywriter: CopywriterControl,
    reviewer_key: str,
    database: str,
) -> None:
    seed_experiment(client, admin, decide, ingest, runtime)
    copywriter.set_mode("slow")
    copywriter.slow_seconds = 2.5
    page = offline_page.page
    sign_in(page, live_server, name=REVIEWER, key=reviewer_key)
    page.goto(f"{live_server}/console/experiments/spring/loop-runs")
    assert page.get_by_text("The loop has not run yet").is_visible()
    # What the page shows while the run is under way, reported as it changes (Playwright
    # waits for the navigation that ends the run before it reads the page again).
    shown: list[str] = []
    page.on("console", lambda m: shown.append(m.text) if m.text.startswith("progress:") else None)
    page.evaluate(
        """() => { const span = document.querySelector('.progress');
        const button = span.parentElement.querySelector('button');
        new MutationObserver(() => console.info('progress:' + span.textContent
            + '|disabled=' + button.disabled)).observe(span, {childList: true}); }"""
    )
    page.click("text=Run the loop now")
    page.wait_for_selector(".notice", timeout=30_000)
    assert "Loop run 1: succeeded" in page.locator(".notice").inner_text()
    assert len(shown) >= 2, shown  # it counted the seconds
    assert re.match(r"progress:Running the loop: .*… 0 s", shown[0]), shown
    assert shown[-1].endswith("|disabled=true"), shown  # no second click while it runs
    assert f"console by {REVIEWER}" in page.locator("#run-1-h").inner_text()
    check_page(page, "loop-runs", database)
    copywriter.set_mode("clean")
    page.click("text=Run the loop now")
    page.wait_for_url(re.compile(r".*#run-\d+"), timeout=30_000)
    assert page.locator(".run").count() == 2
    page.goto(f"{live_server}/console/experiments/spring/learnings")
    assert page.locator(".learnings li").count() >= 1
    check_page(page, "learnings", database)
    page.click("#library-name")
    page.wait_for_url(re.compile(r".*/console/libraries/default"))
    assert page.locator(".learnings li").count() >= 1
    assert "Holds in: spring" in page.locator(".learnings .where").first.inner_text()
    check_page(page, "library", database)
    page.goto(f"{live_server}/console/experiments/spring/edit")
    check_page(page, "experiment-edit", database)
    page.goto(f"{live_server}/console/review?experiment=spring")
    check_page(page, "review-queue", database)
    assert offline_page.blocked == []


def test_refusals(
    live_server: str,
    offline_page: OfflinePage,
    runtime: Runtime,
    reviewer_key: str,
    admin_key: str,
) -> None:
    web = httpx.Client(
        base_url=live_server, follow_redirects=False, headers={"accept": "text/html"}
    )
    same = {"origin": live_server}
    # No session: pages send you to sign in (and back), forms are refused.
    response = web.get("/console/review")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/sign-in?next=/console/review")
    assert web.post("/console/experiments/new", data={"key": "x"}, headers=same).status_code == 401
    # A client that asks for no page gets the one error shape.
    refused = web.get("/console/review", headers={"accept": "application/json"})
    assert refused.status_code == 401
    assert refused.json()["error"]["details"] == {"field": "session"}
    # An expired session, in the browser: back to the sign-in page, saying why.
    hours = runtime.settings.console_session_hours
    expired = make_session(
        runtime,
        name="Old",
        raw_key=reviewer_key,
        now=utcnow() - timedelta(hours=hours, seconds=1),
    )
    context = offline_page.page.context
    context.add_cookies([{"name": COOKIE, "value": expired, "url": f"{live_server}/console/"}])
    page = offline_page.page
    page.goto(f"{live_server}/console/experiments")
    assert "/console/sign-in" in page.url
    assert "expired" in page.locator(".error").inner_text()
    # A cross-site form post with a live session and its token: refused for its origin.
    good = make_session(runtime, name="Eve", raw_key=reviewer_key)
    web.cookies.set(COOKIE, good, domain="127.0.0.1", path="/console")
    form_page = web.get("/console/experiments/new")
    assert form_page.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', form_page.text)
    assert csrf is not None
    body = {"csrf": csrf.group(1), "key": "evil", "name": "Evil", "arms": "Hi there"}
    evil = {"origin": "http://evil.example", "sec-fetch-site": "cross-site"}
    assert web.post("/console/experiments/new", data=body, headers=evil).status_code == 403
    # ... and a same-origin post without the token.
    forged = {**body, "csrf": "x"}
    assert web.post("/console/experiments/new", data=forged, headers=same).status_code == 403
    # The same post, from the console with its token, goes through.
    assert web.post("/console/experiments/new", data=body, headers=same).status_code == 303
    # A review session may not change what is measured: an admin's decision.
    edit = web.get("/console/experiments/evil/edit").text
    assert 'id="f-primary_metric" name="primary_metric" disabled' in edit
    response = web.post(
        "/console/experiments/evil/edit",
        data={"csrf": csrf.group(1), "name": "Evil", "primary_metric": "open"},
        headers=same,
    )
    assert response.status_code == 403
    assert "only an admin key may change it" in response.text
    # A console session is no API key: the admin API refuses it (and the review key).
    assert web.get("/v1/admin/keys").status_code == 401
    review = {"Authorization": f"Bearer {reviewer_key}"}
    assert web.get("/v1/admin/keys", headers=review).status_code == 403
    assert web.post("/v1/admin/purge", headers=review, json={}).status_code == 403
    # Signing out ends the session on the server, not only in this browser.
    assert (
        web.post("/console/sign-out", data={"csrf": csrf.group(1)}, headers=same).status_code == 303
    )
    web.cookies.set(COOKIE, good, domain="127.0.0.1", path="/console")
    assert web.get("/console/experiments").status_code == 303
