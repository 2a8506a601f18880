"""The audit log: an entry per admin change, the hash chain, and GET /audit/verify."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from sqlalchemy import delete, update

from controller import audit
from controller.db import Database, audit_log, create_engine
from tests.controller.conftest import (
    ADMIN,
    BAD_PAGING_QUERIES,
    Client,
    assert_invalid_input,
    post_config,
    register,
)
from tests.support.metrics import by_label, scrape

COMMENT = "X-Change-Comment"


async def _json(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def _entries(client: Client, query: str = "") -> Any:
    return await _json(await client.get(f"/audit{query}", headers=ADMIN))


async def _verify(client: Client) -> Any:
    return await _json(await client.get("/audit/verify", headers=ADMIN))


async def _every_action(client: Client) -> None:
    """config.publish twice, config.rollback, settings.update, agent.revoke: 5 entries."""
    await _json(await post_config(client, "https://example.org/a", **{COMMENT: "first"}), 201)
    await _json(await post_config(client, "https://example.org/b"), 201)
    rollback = await client.post(
        "/config/rollback", json={"version": 1}, headers={**ADMIN, COMMENT: "b broke"}
    )
    await _json(rollback, 201)
    settings = await client.put("/settings", json={"poll_interval_seconds": 9}, headers=ADMIN)
    await _json(settings)
    agent = await register(client)
    revoked = await client.delete(f"/agents/{agent['agent_id']}", headers=ADMIN)
    assert revoked.status == 204


async def _tamper(database_url: str, statement: Any) -> None:
    """Change the log behind the controller's back, straight through SQLAlchemy."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(statement)
    finally:
        await engine.dispose()


async def test_an_empty_log_verifies(client: Client) -> None:
    """A new database has no entries, and an empty chain is intact."""
    assert await _entries(client) == {"entries": [], "total": 0, "limit": 100, "offset": 0}
    assert await _verify(client) == {
        "ok": True,
        "entries": 0,
        "first_bad_seq": None,
        "last_seq": None,
        "last_hash": None,
    }


async def test_every_admin_change_is_recorded_newest_first(client: Client) -> None:
    """Publish, rollback, settings and revoke each append one entry by "admin", newest first."""
    await _every_action(client)
    page = await _entries(client)
    assert page["total"] == 5
    entries = page["entries"]
    assert [e["seq"] for e in entries] == [5, 4, 3, 2, 1]
    actions = ["agent.revoke", "settings.update", "config.rollback", "config.publish"]
    assert [e["action"] for e in entries] == [*actions, "config.publish"]
    assert {e["actor"] for e in entries} == {"admin"}
    revoke, settings, rollback, second, first = entries
    assert revoke["target"].startswith("agents/")
    assert settings["target"] == "settings"
    assert settings["detail"] == {"poll_interval_seconds": 9, "previous": None, "comment": None}
    assert rollback["target"] == "config/versions/3"
    assert rollback["detail"]["rolled_back_to"] == 1
    assert rollback["detail"]["comment"] == "b broke"
    assert rollback["detail"]["config_sha256"] == first["detail"]["config_sha256"]
    assert (first["detail"]["version"], first["detail"]["previous_version"]) == (1, 0)
    assert second["detail"]["comment"] is None
    assert [e["prev_hash"] for e in entries[:-1]] == [e["hash"] for e in entries[1:]]
    assert first["prev_hash"] == "0" * 64
    paged = await _entries(client, "?limit=2&offset=1")
    assert [e["seq"] for e in paged["entries"]] == [4, 3]
    assert (paged["total"], paged["limit"], paged["offset"]) == (5, 2, 1)


async def test_unchanged_writes_and_refusals_record_nothing(client: Client) -> None:
    """A POST equal to the current config, the same poll interval again, 412, 404 and 422
    append no entry."""
    await _json(await post_config(client, "https://example.org/a"), 201)
    await _json(await client.put("/settings", json={"poll_interval_seconds": 9}, headers=ADMIN))
    before = await _entries(client)
    await _json(await post_config(client, "https://example.org/a"))
    await _json(await client.put("/settings", json={"poll_interval_seconds": 9}, headers=ADMIN))
    stale = await post_config(client, "https://example.org/b", **{"If-Match": '"0"'})
    assert stale.status == 412
    assert (await client.post("/config/rollback", json={"version": 7}, headers=ADMIN)).status == 404
    unknown_agent = "6f1c2a8e-4b7d-4e0a-9c3f-2d5b8a1e7f90"
    assert (await client.delete(f"/agents/{unknown_agent}", headers=ADMIN)).status == 404
    await assert_invalid_input(await post_config(client, "ftp://example.org/"))
    assert await _entries(client) == before


async def test_hash_is_sha256_of_prev_hash_and_canonical_json(client: Client) -> None:
    """Each hash can be recomputed from the entry alone, as documented."""
    await _every_action(client)
    for entry in (await _entries(client))["entries"]:
        fields = {k: entry[k] for k in ("seq", "at", "actor", "action", "target", "detail")}
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256((entry["prev_hash"] + canonical).encode()).hexdigest()
        assert entry["hash"] == digest
        assert len(entry["at"]) == len("2026-11-29T08:00:00.000000Z")
        assert entry["at"].endswith("Z")
    verified = await _verify(client)
    assert verified["ok"] is True
    assert (verified["entries"], verified["last_seq"]) == (5, 5)
    assert verified["last_hash"] == (await _entries(client))["entries"][0]["hash"]


@pytest.mark.parametrize(
    "change",
    [
        {"actor": "mallory"},
        {"detail": {"version": 2, "comment": "nothing to see"}},
        {"action": "settings.update"},
        {"hash": "f" * 64},
    ],
    ids=lambda change: next(iter(change)),
)
async def test_an_edited_entry_is_named_by_verify(
    client: Client, database_url: str, change: dict[str, Any]
) -> None:
    """An UPDATE of one entry behind the controller's back: verify names that seq."""
    await _every_action(client)
    await _tamper(database_url, update(audit_log).where(audit_log.c.seq == 3).values(**change))
    verified = await _verify(client)
    assert (verified["ok"], verified["entries"], verified["first_bad_seq"]) == (False, 5, 3)


async def test_a_deleted_entry_is_named_by_verify(client: Client, database_url: str) -> None:
    """A DELETE of entry 2 breaks the link of entry 3, which verify names."""
    await _every_action(client)
    await _tamper(database_url, delete(audit_log).where(audit_log.c.seq == 2))
    verified = await _verify(client)
    assert (verified["ok"], verified["entries"], verified["first_bad_seq"]) == (False, 4, 3)


async def test_deleting_the_first_entry_is_detected(client: Client, database_url: str) -> None:
    """Entry 1 gone: entry 2 becomes the first, and does not start the chain."""
    await _every_action(client)
    await _tamper(database_url, delete(audit_log).where(audit_log.c.seq == 1))
    assert (await _verify(client))["first_bad_seq"] == 2


@pytest.mark.parametrize("chunk", [1, 2, 5, 6])
async def test_verify_in_chunks_gives_the_same_answer(
    client: Client, database_url: str, chunk: int
) -> None:
    """Chunk boundaries change nothing: an intact chain and a broken one read the same."""
    await _every_action(client)
    database = Database(create_engine(database_url))
    try:
        intact = await audit.verify(database, chunk=chunk)
        assert (intact.ok, intact.entries, intact.last_seq) == (True, 5, 5)
        await _tamper(database_url, update(audit_log).where(audit_log.c.seq == 4).values(actor="x"))
        broken = await audit.verify(database, chunk=chunk)
        assert (broken.ok, broken.entries, broken.first_bad_seq) == (False, 5, 4)
    finally:
        await database.close(1.0)


async def test_a_failed_append_rolls_the_change_back(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry is written in the change's transaction: no entry, no version."""

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the audit log is full")

    monkeypatch.setattr(audit, "append", broken)
    resp = await post_config(client, "https://example.org/a")
    assert resp.status == 500
    monkeypatch.undo()
    history = await _json(await client.get("/config/versions", headers=ADMIN))
    assert history["total"] == 1
    assert (await _entries(client))["total"] == 0


@pytest.mark.parametrize("query", BAD_PAGING_QUERIES)
async def test_bad_paging_is_422(client: Client, query: str) -> None:
    """GET /audit refuses what every listing refuses."""
    await assert_invalid_input(await client.get(f"/audit?{query}", headers=ADMIN))


async def test_metrics_count_entries_by_action(client: Client) -> None:
    """fleetconf_controller_audit_entries_total counts each committed entry by its action."""
    before = by_label(await scrape(client), "fleetconf_controller_audit_entries_total", "action")
    assert set(before.values()) == {0}
    await _every_action(client)
    await _json(await post_config(client, "https://example.org/a"))
    counts = by_label(await scrape(client), "fleetconf_controller_audit_entries_total", "action")
    assert counts == {
        "agent.revoke": 1,
        "config.publish": 2,
        "config.rollback": 1,
        "credential.create": 0,
        "credential.revoke": 0,
        "rollout.abort": 0,
        "rollout.complete": 0,
        "rollout.pause": 0,
        "rollout.promote": 0,
        "rollout.resume": 0,
        "rollout.rollback": 0,
        "rollout.start": 0,
        "settings.update": 1,
    }
    assert sum(counts.values()) == (await _entries(client))["total"]


async def test_credentials_issued_and_revoked_are_recorded_without_the_token(
    client: Client,
) -> None:
    """credential.create and credential.revoke name the credential, never its token; the
    chain still verifies and a viewer may read the log."""
    resp = await client.post(
        "/credentials",
        json={"name": "on-call", "role": "viewer"},
        headers={**ADMIN, "X-Change-Comment": "pager rotation"},
    )
    issued = await _json(resp, 201)
    revoked = await client.delete("/credentials/on-call", headers=ADMIN)
    assert revoked.status == 204
    entries = (await _entries(client))["entries"]
    assert [(e["action"], e["target"], e["actor"]) for e in entries[:2]] == [
        ("credential.revoke", "credentials/on-call", "admin"),
        ("credential.create", "credentials/on-call", "admin"),
    ]
    assert entries[1]["detail"] == {
        "name": "on-call",
        "role": "viewer",
        "comment": "pager rotation",
    }
    assert issued["token"] not in json.dumps(entries)
    assert (await _verify(client))["ok"] is True
    viewer = await client.post(
        "/credentials", json={"name": "dash", "role": "viewer"}, headers=ADMIN
    )
    token = (await _json(viewer, 201))["token"]
    seen = await client.get("/audit", headers={"Authorization": f"Bearer {token}"})
    assert seen.status == 200
