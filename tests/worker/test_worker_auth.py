"""The worker token on /config: required when set, open when not."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from common.constants import PROBLEM_MEDIA_TYPE

Client = TestClient[web.Request, web.Application]
CONFIG = {"url": "https://ip.me"}


async def test_post_without_token_is_401_with_challenge(secured: Client, post_config: Any) -> None:
    """A worker with a token refuses POST /config without one, naming the Bearer scheme."""
    response = await post_config(secured, CONFIG)
    assert response.status == 401
    assert response.content_type == PROBLEM_MEDIA_TYPE
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_get_without_token_is_401(secured: Client) -> None:
    """A worker with a token refuses GET /config without one."""
    response = await secured.get("/config")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer wrong-token", "Bearer s3cret-worker-token-and-more", "Basic czNjcmV0", "Bearer "],
)
async def test_wrong_credential_is_401(
    secured: Client, post_config: Any, authorization: str
) -> None:
    """A wrong token, another scheme or an empty token is 401 on POST and GET /config."""
    headers = {"Authorization": authorization}
    posted = await post_config(secured, CONFIG, headers=headers)
    fetched = await secured.get("/config", headers=headers)
    assert (posted.status, fetched.status) == (401, 401)
    assert posted.content_type == PROBLEM_MEDIA_TYPE
    assert "WWW-Authenticate" in posted.headers


async def test_right_token_is_accepted(
    secured: Client, post_config: Any, auth: dict[str, str]
) -> None:
    """The right token lets POST and GET /config through."""
    posted = await post_config(secured, CONFIG, headers=auth)
    fetched = await secured.get("/config", headers=auth)
    assert posted.status == 200
    assert await fetched.json() == {"version": 1, "config": CONFIG}


async def test_auth_is_checked_before_the_body(secured: Client, post_config: Any) -> None:
    """An unauthenticated caller learns nothing about body validation: 401, not 422."""
    response = await post_config(secured, {"url": "ftp://x"}, version="garbage")
    assert response.status == 401


async def test_no_token_configured_means_open(client: Client, post_config: Any) -> None:
    """A worker without a token accepts POST and GET /config without credentials."""
    posted = await post_config(client, CONFIG)
    fetched = await client.get("/config")
    assert posted.status == 200
    assert fetched.status == 200


async def test_hit_needs_no_token(secured: Client) -> None:
    """GET /hit is open even on a worker with a token (503 here: nothing configured)."""
    response = await secured.get("/hit")
    assert response.status == 503
