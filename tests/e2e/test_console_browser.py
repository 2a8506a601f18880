"""The console at /console in headless Chromium, on real controller, agent and worker
processes: a viewer and an admin sign in, a change converges live, a rollback from the
page is followed by the fleet, two versions are diffed, and a label carrying markup is
shown as text. Screenshots of the main views go to the test's folder (paths printed)."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import pytest

from controller.db import Database, agents, create_engine, utcnow
from tests.e2e.conftest import ADMIN_TOKEN
from tests.e2e.console import Console
from tests.e2e.console_fleet import (
    FOLLOW_TIMEOUT_SECONDS,
    HOSTILE_LABEL,
    URL_A,
    URL_B,
    SmallFleet,
    assert_page_was_clean,
    controller,
    start_small_fleet,
)
from tests.support.browser import HeadlessChromium
from tests.support.processes import ProcessGroup, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SEEDED_AGENTS: Final = 10_000


async def rows(console: Console, table: str, count: int) -> None:
    await console.wait_for(
        f"document.querySelectorAll('#{table}-rows tbody tr').length === {count}",
        f"{count} rows in {table}",
    )


async def refused_then_viewer(console: Console, viewer: str) -> None:
    """A token nobody issued is refused and not kept; the viewer sees everything and gets
    no button that would fail; signing out forgets the token and what it showed."""
    page = console.page
    await console.sign_in("not-a-token-anyone-issued")
    await console.wait_for_text("#login-error", "not valid")
    assert await page.evaluate("sessionStorage.length") == 0
    await console.sign_in_as(viewer)
    assert "oncall" in await console.wait_for_text("#who", "viewer")
    await console.wait_for_text("#current", "v1", URL_A, "first address")
    await console.show("history")
    await rows(console, "history", 2)
    assert await console.count("button.rollback") == 0
    assert await console.count("#rollout button") == 0
    await console.shot("viewer-history")
    # The token lives in this tab's sessionStorage only: no cookie, not in the URL.
    assert await page.evaluate("document.cookie") == ""
    assert viewer not in str(await page.evaluate("location.href"))
    await console.sign_out()
    assert await page.evaluate("sessionStorage.length") == 0
    # Nothing the viewer was shown stays on the page for whoever signs in next.
    assert await console.count("#app td, #app dd, #app li") == 0


async def change_converges_live(console: Console, fleet: SmallFleet) -> int:
    """A change published while the page is open shows at once; with one worker down it
    is converging with that agent as a laggard, and once the worker is back the same page
    (no reload) shows it complete, both confirmations in the histogram."""
    page = console.page
    await console.show("fleet")
    await console.wait_for_text("#convergence", "v1", "complete")
    await page.evaluate("window.__sameDocument = true")
    await fleet.workers[1].stop()
    version = await fleet.publish(URL_B, "move to b")
    await console.wait_for_text("#current", f"v{version}", URL_B, "move to b", "admin")
    await console.wait_for_text(
        "#convergence", f"v{version}", "converging", "Laggards (1)", "edge-02"
    )
    await console.shot("converging")
    await fleet.workers[1].start()
    converged = await console.wait_for_text("#convergence", f"v{version}", "complete")
    assert "applied2" in converged.replace(" ", "")
    histogram = await page.evaluate(
        "Array.from(document.querySelectorAll('#convergence .histogram .count'))"
        ".reduce((sum, n) => sum + Number(n.textContent || 0), 0)"
    )
    assert histogram == 2, "both confirmations are counted in the histogram"
    assert await page.evaluate("window.__sameDocument") is True
    await console.shot("fleet")
    return version


async def markup_is_text_and_labels_filter(console: Console) -> None:
    """A label carrying markup is shown as text and nothing in it ran; the filter works."""
    await console.show("agents")
    await rows(console, "agents", 2)
    assert HOSTILE_LABEL in await console.text("#agents-rows")
    assert await console.count("#agents-rows script, #agents-rows img") == 0
    assert await console.page.evaluate("window.__injected === undefined") is True
    await console.shot("agents")
    await console.page.evaluate(
        "document.getElementById('agent-label').value = 'site=ams1';"
        "document.querySelector('#agent-filter button').click()"
    )
    await console.wait_for(
        "document.querySelectorAll('#agents-rows tbody tr').length === 1"
        " && document.getElementById('agents-rows').textContent.includes('edge-01')",
        "only the agent labelled site=ams1",
    )


async def two_versions_diffed(console: Console, version: int) -> None:
    """Versions 1 and ``version`` side by side: the changed line on each side."""
    await console.show("history")
    await rows(console, "history", 3)
    await console.click("input[name=diff-a][value='1']")
    await console.click(f"input[name=diff-b][value='{version}']")
    diff = await console.wait_for_text("#diff", f"v1 \N{LEFT RIGHT ARROW} v{version}", "1 changed")
    assert URL_A in diff
    assert URL_B in diff
    changed = await console.page.evaluate(
        "Array.from(document.querySelectorAll('#diff-table tr.changed td.side'))"
        ".map(n => n.textContent)"
    )
    assert changed == [f'  "url": "{URL_A}"', f'  "url": "{URL_B}"']
    await console.shot("diff")


async def rolled_back_from_the_page(console: Console, fleet: SmallFleet, version: int) -> None:
    """The rollback button asks for a confirmation naming version 1; the fleet follows."""
    await console.click("button.rollback[data-version='1']")
    await console.wait_for("document.getElementById('confirm').open", "the confirmation")
    assert await console.text("#confirm-title") == "Roll back to version 1?"
    assert await console.text("#confirm-ok") == "Roll back to version 1"
    await console.shot("rollback-confirmation")
    await console.page.evaluate("document.getElementById('confirm-comment').focus()")
    await console.page.insert_text("b is failing")
    await console.click("#confirm-ok")
    rolled_back = version + 1
    await wait_until(
        lambda: fleet.workers_hold(rolled_back, URL_A),
        timeout_seconds=FOLLOW_TIMEOUT_SECONDS,
        what=f"both workers hold version {rolled_back} (version 1's address)",
    )
    await console.show("fleet")
    await console.wait_for_text("#current", f"v{rolled_back}", "Rolled back to", "b is failing")
    await console.wait_for_text("#convergence", f"v{rolled_back}", "complete")


async def test_console_viewer_and_admin_converge_diff_roll_back_and_show_markup_as_text(
    processes: ProcessGroup,
    browser: HeadlessChromium,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """Viewer: no actions; admin: live convergence, inert markup, diff, rollback, audit."""
    fleet = await start_small_fleet(processes, tmp_path, http)
    viewer = await fleet.viewer_token("oncall")
    console = Console(browser.page, fleet.url, tmp_path / "screenshots")
    await console.open()
    await refused_then_viewer(console, viewer)
    await console.sign_in_as(ADMIN_TOKEN)
    await console.wait_for_text("#who", "admin")
    version = await change_converges_live(console, fleet)
    await markup_is_text_and_labels_filter(console)
    await two_versions_diffed(console, version)
    await rolled_back_from_the_page(console, fleet, version)
    await console.show("audit")
    await console.wait_for_text("#audit-verify", "verified", "intact")
    await console.wait_for_text("#audit-rows", "config.rollback", "b is failing")
    await console.shot("audit")
    # No rollout runs (and GET /rollouts may not exist yet: 404): the panel says so.
    await console.show("fleet")
    await console.wait_for_text("#rollout", "No rollout")
    assert_page_was_clean(browser.page, fleet.url, {("/whoami", 401), ("/rollouts", 404)})


# Run in the page: what its Content-Security-Policy lets through, tried from its own script.
POLICY_PROBE_JS: Final = """(async () => {
  const script = document.createElement('script');
  script.textContent = 'window.__inline = 1';
  document.head.append(script);
  const handler = document.createElement('img');
  handler.setAttribute('src', 'data:,');
  handler.setAttribute('onerror', 'window.__handler = 1');
  handler.setAttribute('onload', 'window.__handler = 1');
  document.body.append(handler);
  let foreign = 'answered';
  try { await fetch('http://127.0.0.2:9/probe', {mode: 'no-cors'}); }
  catch (error) { foreign = 'refused'; }
  await new Promise(resolve => setTimeout(resolve, 200));
  return {inline: window.__inline ?? null, handler: window.__handler ?? null, foreign};
})()"""


async def test_console_policy_refuses_inline_script_and_other_origins(
    processes: ProcessGroup, browser: HeadlessChromium, tmp_path: Path
) -> None:
    """In the browser, the console's policy stops inline script, handlers and other origins."""
    service = controller(processes, tmp_path)
    await service.start()
    assert service.url is not None
    console = Console(browser.page, service.url, tmp_path / "screenshots")
    await console.open()
    probe = await browser.page.evaluate(POLICY_PROBE_JS, await_promise=True)
    assert probe == {"inline": None, "handler": None, "foreign": "refused"}
    violations = " ".join(text for source, text in browser.page.log_errors if source != "network")
    assert "Executing inline script violates" in violations
    assert "Executing inline event handler violates" in violations
    assert "connect-src 'self'" in violations
    assert not [r.url for r in browser.page.requests.values() if "127.0.0.2" in r.url]
    # Besides the probe, nothing on the page failed: the files it loads are all its own.
    browser.page.log_errors.clear()
    assert_page_was_clean(browser.page, service.url, set())


# A poll interval no test here outlasts three times over.
STALE_FREE_INTERVAL_SECONDS: Final = 600


async def seed_agents(database_url: str, count: int) -> None:
    """``count`` registered agents, written straight to the controller's database."""
    database = Database(create_engine(database_url))
    now = utcnow()
    rows = [
        {
            "id": str(uuid.uuid4()),
            "hostname": f"host-{n:05d}",
            "labels": {"rack": f"r{n % 40}"},
            "token_hash": uuid.uuid4().hex * 2,
            # Distinct times keep the listing in hostname order.
            "registered_at": now + dt.timedelta(microseconds=n),
            "assigned_version": 0,
        }
        for n in range(count)
    ]

    async def insert(conn: Any) -> None:
        await conn.execute(agents.insert(), rows)

    try:
        await database.transaction(insert)
    finally:
        await database.close(1.0)


async def test_console_pages_ten_thousand_agents(
    processes: ProcessGroup, browser: HeadlessChromium, tmp_path: Path
) -> None:
    """With 10,000 agents the console reads one page of 100 at a time, and pages on."""
    database_url = f"sqlite+aiosqlite:///{tmp_path}/controller.db"
    # The seeded agents never poll: at the usual 1 s interval they would count as stale
    # 3 s after they were written, and a loaded machine can take longer than that to
    # show the page. Here they must stay pending laggards while the pages are read.
    service = controller(processes, tmp_path, poll_interval_seconds=STALE_FREE_INTERVAL_SECONDS)
    await service.start()
    await seed_agents(database_url, SEEDED_AGENTS)
    assert service.url is not None
    console = Console(browser.page, service.url, tmp_path / "screenshots")
    await console.open()
    await console.sign_in_as(ADMIN_TOKEN)
    await console.wait_for_text("#summary", "10000")
    await console.wait_for_text("#convergence", "Laggards (10000)")
    assert await console.count("#convergence tbody tr") == 10
    await console.show("agents")
    await console.wait_for_text("#agents-pager", "1\N{EN DASH}100 of 10,000")
    assert await console.count("#agents-rows tbody tr") == 100
    await console.click("#agents-pager .next")
    await console.wait_for_text("#agents-pager", "101\N{EN DASH}200 of 10,000")
    assert await console.count("#agents-rows tbody tr") == 100
    assert "host-00100" in await console.text("#agents-rows tbody tr")
    # The label filter runs in the database too: 250 of the 10,000 are on rack r7.
    await console.page.evaluate(
        "document.getElementById('agent-label').value = 'rack=r7';"
        "document.querySelector('#agent-filter button').click()"
    )
    await console.wait_for_text("#agents-pager", "1\N{EN DASH}100 of 250")
    assert "host-00007" in await console.text("#agents-rows tbody tr")
    await console.shot("agents-10000")
    agent_reads = [
        urlsplit(r.url).query
        for r in browser.page.requests.values()
        if urlsplit(r.url).path == "/agents"
    ]
    assert agent_reads, "the console read /agents"
    assert all("limit=100" in q for q in agent_reads), agent_reads
    assert_page_was_clean(browser.page, service.url, {("/rollouts", 404)})
