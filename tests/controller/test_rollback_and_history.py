"""Who and why on every version (X-Change-Comment), and POST /config/rollback."""

from __future__ import annotations

import re
from typing import Any

import pytest

from controller.comments import COMMENT_PATTERN, refused
from controller.db import config_versions, create_engine, utcnow
from tests.controller.conftest import ADMIN, Client, assert_invalid_input, post_config
from tests.security.rawhttp import RawAnswer, build_request, send_raw

COMMENT = "X-Change-Comment"


async def _json(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def _rollback(client: Client, version: Any, **headers: str) -> Any:
    return await client.post(
        "/config/rollback", json={"version": version}, headers={**ADMIN, **headers}
    )


async def _state(client: Client) -> tuple[Any, Any]:
    """The history and the audit log: what a refused request must leave as it was."""
    history = await _json(await client.get("/config/versions", headers=ADMIN))
    log = await _json(await client.get("/audit", headers=ADMIN))
    return history, log


async def test_versions_show_who_and_why(client: Client) -> None:
    """created_by is "admin" for the admin token, comment is the header; version 0 has neither."""
    await _json(await post_config(client, "https://example.org/a", **{COMMENT: "first"}), 201)
    await _json(await post_config(client, "https://example.org/b"), 201)
    page = await _json(await client.get("/config/versions", headers=ADMIN))
    who = [(i["created_by"], i["comment"], i["rolled_back_to"]) for i in page["items"]]
    assert who == [("admin", None, None), ("admin", "first", None), (None, None, None)]
    one = await _json(await client.get("/config/versions/1", headers=ADMIN))
    assert (one["created_by"], one["comment"]) == ("admin", "first")


async def test_comment_keeps_utf8_and_exactly_500_characters(client: Client) -> None:
    """A UTF-8 comment of 500 characters is kept as sent (whitespace around it trimmed)."""
    comment = "é" * 499 + "✓"
    resp = await client.post(
        "/config",
        json={"url": "https://example.org/a"},
        headers={**ADMIN, COMMENT: f"  {comment} "},
    )
    await _json(resp, 201)
    one = await _json(await client.get("/config/versions/1", headers=ADMIN))
    assert one["comment"] == comment


async def _raw(client: Client, method: str, path: str, body: bytes, comment: bytes) -> RawAnswer:
    headers: list[tuple[str | bytes, str | bytes]] = [
        *ADMIN.items(),
        ("Content-Type", "application/json"),
        (COMMENT, comment),
    ]
    return await send_raw(client, build_request(method, path, headers, body))


# C0 controls other than tab, and DEL, are refused by the HTTP parser itself (400), before
# any handler runs; every other refusal is the controller's 422.
@pytest.mark.parametrize(
    ("comment", "status"),
    [
        (b"x" * 501, 422),
        (b"tab\there", 422),
        (b"del\x7f", 400),
        (b"caf\xe9", 422),
        ("c1\u0085".encode(), 422),
        ("rtl\u202e".encode(), 422),
        ("isolate\u2066".encode(), 422),
        ("sep\u2028".encode(), 422),
        (b"bell\x07", 400),
        (b"esc\x1b[2J", 400),
    ],
    ids=repr,
)
async def test_bad_comments_are_refused_and_change_nothing(
    client: Client, comment: bytes, status: int
) -> None:
    """Too long, a control character or bytes that are not UTF-8: refused on every change,
    and nothing is stored or audited."""
    raw = comment
    before = await _state(client)
    attempts = [
        await _raw(client, "POST", "/config", b'{"url": "https://example.org/x"}', raw),
        await _raw(client, "POST", "/config/rollback", b'{"version": 0}', raw),
        await _raw(client, "PUT", "/settings", b'{"poll_interval_seconds": 7}', raw),
    ]
    for answer in attempts:
        assert answer.status == status, answer.body
        if status == 422:
            assert answer.content_type == "application/problem+json"
            assert b"X-Change-Comment" in answer.body
    assert await _state(client) == before


async def test_rollback_stores_a_new_version_with_the_old_content(client: Client) -> None:
    """Rollback to n: 201 with a new version m holding n's config, hinted and current."""
    for name in ("a", "b", "c"):
        await _json(await post_config(client, f"https://example.org/{name}"), 201)
    resp = await _rollback(client, 1, **{COMMENT: "b and c broke"})
    body = await _json(resp, 201)
    assert set(body) == {"version", "etag", "created_at", "rolled_back_to"}
    assert (body["version"], body["rolled_back_to"]) == (4, 1)
    served = await client.get("/config", headers=ADMIN)
    assert served.headers["X-Config-Version"] == "4"
    # Version 4's ETag names its number and its content, which is version 1's.
    assert body["etag"] == resp.headers["ETag"] == served.headers["ETag"]
    assert body["etag"].startswith('"4-')
    assert await served.json() == {"url": "https://example.org/a"}
    four = await _json(await client.get("/config/versions/4", headers=ADMIN))
    assert (four["rolled_back_to"], four["comment"], four["created_by"]) == (
        1,
        "b and c broke",
        "admin",
    )
    page = await _json(await client.get("/config/versions", headers=ADMIN))
    assert [item["rolled_back_to"] for item in page["items"]] == [1, None, None, None, None]


async def test_rollback_to_the_current_content_is_200_and_stores_nothing(client: Client) -> None:
    """When n's configuration is already current the answer is 200 with the current version."""
    await _json(await post_config(client, "https://example.org/a"), 201)
    await _json(await post_config(client, "https://example.org/b"), 201)
    await _json(await _rollback(client, 1), 201)
    before = await _state(client)
    again = await _json(await _rollback(client, 1))
    assert (again["version"], again["rolled_back_to"]) == (3, 1)
    same = await _json(await _rollback(client, 3))
    assert same["version"] == 3
    assert await _state(client) == before


async def test_rollback_refusals_change_nothing(client: Client) -> None:
    """Unknown version 404, a stale If-Match 412, a bad body 422: nothing stored or audited."""
    await _json(await post_config(client, "https://example.org/a"), 201)
    await _json(await post_config(client, "https://example.org/b"), 201)
    before = await _state(client)
    unknown = await _rollback(client, 9)
    assert unknown.status == 404
    assert unknown.content_type == "application/problem+json"
    stale = await _rollback(client, 1, **{"If-Match": '"1"'})
    assert stale.status == 412
    assert stale.content_type == "application/problem+json"
    for bad in (-1, "1", 1.5, None, 2**31):
        await assert_invalid_input(await _rollback(client, bad))
    extra = await client.post("/config/rollback", json={"version": 1, "url": "x"}, headers=ADMIN)
    await assert_invalid_input(extra)
    assert await _state(client) == before


async def test_rollback_if_match_is_compare_and_set(client: Client) -> None:
    """If-Match naming the current version lets the rollback through, as on POST /config;
    JSON's 1.0 is the version 1."""
    await _json(await post_config(client, "https://example.org/a"), 201)
    await _json(await post_config(client, "https://example.org/b"), 201)
    current = (await client.get("/config", headers=ADMIN)).headers["ETag"]
    body = await _json(await _rollback(client, 1.0, **{"If-Match": current}), 201)
    assert (body["version"], body["rolled_back_to"]) == (3, 1)


async def test_rollback_to_version_zero(client: Client) -> None:
    """Version 0, the default configuration, is a valid rollback target."""
    await _json(await post_config(client, "https://example.org/a"), 201)
    body = await _json(await _rollback(client, 0), 201)
    assert (body["version"], body["rolled_back_to"]) == (2, 0)
    served = await client.get("/config", headers=ADMIN)
    assert await served.json() == {"url": None}


async def test_rollback_to_a_configuration_no_longer_valid_is_409(
    client: Client, database_url: str
) -> None:
    """A stored body that fails today's validation is refused (409), and nothing changes."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                config_versions.insert().values(
                    version=5, body='{"url":"ftp://example.org/"}', created_at=utcnow()
                )
            )
    finally:
        await engine.dispose()
    resp = await _rollback(client, 5)
    assert resp.status == 409, await resp.text()
    assert resp.content_type == "application/problem+json"
    served = await client.get("/config", headers=ADMIN)
    assert served.headers["X-Config-Version"] == "0"
    assert (await _json(await client.get("/audit", headers=ADMIN)))["total"] == 0


def test_documented_pattern_is_the_rule_enforced() -> None:
    """The OpenAPI pattern of X-Change-Comment refuses exactly the characters the check does."""
    allowed = re.compile(COMMENT_PATTERN.removeprefix("^").removesuffix("$"))
    surrogates = range(0xD800, 0xE000)
    differ = [
        code
        for code in range(0x30000)
        if code not in surrogates and (allowed.fullmatch(chr(code)) is None) != refused(chr(code))
    ]
    assert differ == []
