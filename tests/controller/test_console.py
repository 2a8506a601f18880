"""What the console needs from the controller, through the app factory on SQLite and
PostgreSQL: its files with a strict policy, GET /whoami, GET /agents?label=, and the
rollout view's histogram."""

from __future__ import annotations

from typing import Any

import pytest

from controller.console import CONTENT_SECURITY_POLICY
from controller.rollout_store import HISTOGRAM_BOUNDS_SECONDS, histogram
from tests.controller.conftest import (
    ADMIN,
    REGISTRATION,
    Client,
    assert_invalid_input,
    post_config,
)

CONSOLE_FILES = (
    ("/console", "text/html"),
    ("/console/console.js", "text/javascript"),
    ("/console/console.css", "text/css"),
)


# The console's files come from the package, not the database: one backend is enough.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@SQLITE_ONLY
@pytest.mark.parametrize(("path", "media_type"), CONSOLE_FILES)
async def test_console_files_carry_a_strict_policy_and_no_credential(
    client: Client, path: str, media_type: str
) -> None:
    """Each console file is public, typed, unframeable and limited to this origin."""
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.content_type == media_type
    assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert "Set-Cookie" not in resp.headers
    assert (await resp.read()).strip()


@SQLITE_ONLY
async def test_console_page_loads_only_its_own_files_and_no_inline_script(client: Client) -> None:
    """The page names its script and style by path, with no inline script or style."""
    page = await (await client.get("/console")).text()
    assert '<script type="module" src="/console/console.js"></script>' in page
    assert '<link rel="stylesheet" href="/console/console.css">' in page
    assert page.count("<script") == 1
    assert "<style" not in page
    assert " style=" not in page
    assert "http://" not in page
    assert "https://" not in page


@SQLITE_ONLY
async def test_console_script_renders_no_markup(client: Client) -> None:
    """The script never hands text to the HTML parser (innerHTML and the like)."""
    script = await (await client.get("/console/console.js")).text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


@SQLITE_ONLY
@pytest.mark.parametrize("name", ["index.html", "..%2Fconsole.py", "console.py", "x.js"])
async def test_console_serves_no_other_file(client: Client, name: str) -> None:
    """Only the page's script and style are served beside it: 404 problem+json otherwise."""
    resp = await client.get(f"/console/{name}")
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"


async def test_whoami_names_the_admin_and_a_viewer(client: Client) -> None:
    """GET /whoami answers each admin or viewer token with its name and role."""
    resp = await client.get("/whoami", headers=ADMIN)
    assert resp.status == 200
    assert await resp.json() == {"name": "admin", "role": "admin"}
    issued = await client.post(
        "/credentials", json={"name": "oncall", "role": "viewer"}, headers=ADMIN
    )
    token = (await issued.json())["token"]
    resp = await client.get("/whoami", headers=bearer(token))
    assert resp.status == 200
    assert await resp.json() == {"name": "oncall", "role": "viewer"}


async def test_whoami_refuses_other_tokens(client: Client) -> None:
    """No token or an unknown one is 401; the registration token is 403."""
    assert (await client.get("/whoami")).status == 401
    assert (await client.get("/whoami", headers=bearer("x" * 32))).status == 401
    resp = await client.get("/whoami", headers=REGISTRATION)
    assert resp.status == 403
    assert resp.content_type == "application/problem+json"


async def _register(client: Client, hostname: str, labels: dict[str, str]) -> None:
    body = {"hostname": hostname, "labels": labels}
    resp = await client.post("/register", json=body, headers=REGISTRATION)
    assert resp.status == 201, await resp.text()


async def _hostnames(client: Client, query: str) -> list[str]:
    resp = await client.get(f"/agents?{query}", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return [item["hostname"] for item in body["items"]]


async def test_agents_filter_by_one_label(client: Client) -> None:
    """?label=KEY=VALUE keeps the agents with exactly that label, with the state filter too."""
    await _register(client, "edge-01", {"site": "ams1", "k8s.io/zone": "a"})
    await _register(client, "edge-02", {"site": "fra2", "note": "a=b <script>"})
    await _register(client, "edge-03", {"site": "ams1", "empty": ""})
    await _register(client, "edge-04", {})
    assert await _hostnames(client, "label=site%3Dams1") == ["edge-01", "edge-03"]
    assert await _hostnames(client, "label=k8s.io%2Fzone%3Da") == ["edge-01"]
    assert await _hostnames(client, "label=note%3Da%3Db%20%3Cscript%3E") == ["edge-02"]
    assert await _hostnames(client, "label=empty%3D") == ["edge-03"]
    assert await _hostnames(client, "label=site%3Dams") == []
    assert await _hostnames(client, "label=site%3Dams1&state=behind") == ["edge-01", "edge-03"]
    assert await _hostnames(client, "label=site%3Dams1&state=stale") == []
    resp = await client.get("/agents?label=site%3Dams1&limit=1&offset=1", headers=ADMIN)
    page = await resp.json()
    assert ([i["hostname"] for i in page["items"]], page["total"]) == (["edge-03"], 2)


@pytest.mark.parametrize(
    "query",
    [
        "label=site",
        "label=%3Dams1",
        "label=bad%20key%3Dx",
        "label=" + "k" * 64 + "%3Dx",
        "label=site%3D" + "v" * 257,
        "label=a%3Db&label=c%3Dd",
        "label=site%3Dams%001",
    ],
)
async def test_agents_label_filter_refuses_what_is_no_label(client: Client, query: str) -> None:
    """A label filter without KEY=, with a bad key, a long value or repeated is 422."""
    await assert_invalid_input(await client.get(f"/agents?{query}", headers=ADMIN))


def test_histogram_counts_each_confirmation_once_in_its_bucket() -> None:
    """Each second count lands in the first bucket whose bound holds it; the rest last."""
    buckets = histogram([0.0, 0.25, 0.26, 1.0, 4.9, 299.0, 301.0, 5000.0])
    assert [b.le_seconds for b in buckets] == [*HISTOGRAM_BOUNDS_SECONDS, None]
    counts = {b.le_seconds: b.agents for b in buckets}
    assert counts[0.25] == 2
    assert counts[0.5] == 1
    assert counts[1.0] == 1
    assert counts[5.0] == 1
    assert counts[300.0] == 1
    assert counts[None] == 2
    assert sum(counts.values()) == 8
    assert all(b.agents == 0 for b in histogram([]))


async def test_rollout_view_carries_the_histogram(client: Client) -> None:
    """GET /config/versions/{n}/rollout counts each confirmation of n into one bucket."""
    resp = await client.post("/register", json={"hostname": "edge-01"}, headers=REGISTRATION)
    agent = await resp.json()
    version = int((await (await post_config(client, "https://one.example/")).json())["version"])
    poll = {
        "Authorization": f"Bearer {agent['agent_token']}",
        "X-Agent-ID": agent["agent_id"],
        "X-Applied-Version": str(version),
    }
    assert (await client.get("/config", headers=poll)).status == 200
    body = await (await client.get(f"/config/versions/{version}/rollout", headers=ADMIN)).json()
    assert len(body["histogram"]) == len(HISTOGRAM_BOUNDS_SECONDS) + 1
    assert sum(bucket["agents"] for bucket in body["histogram"]) == 1
    assert body["histogram"][-1]["le_seconds"] is None


async def test_a_label_value_with_nul_is_refused_on_every_database(client: Client) -> None:
    """NUL, which PostgreSQL's text cannot hold, is no label value: 422 at registration
    (not a 503 on PostgreSQL and a stored agent on SQLite), and nothing registered."""
    body = {"hostname": "edge-01", "labels": {"site": "ams\u00001"}}
    resp = await client.post("/register", json=body, headers=REGISTRATION)
    assert resp.status == 422, await resp.text()
    assert resp.content_type == "application/problem+json"
    assert await _hostnames(client, "") == []
