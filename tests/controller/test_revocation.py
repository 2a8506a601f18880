"""Revoking an agent: its token stops working on every replica."""

from __future__ import annotations

from controller import keys
from tests.controller.conftest import ADMIN, ClientFactory, register
from tests.support.waiting import eventually


async def test_revocation_reaches_the_other_replica(make_client: ClientFactory) -> None:
    """A token cached by replica B is refused by B once A revoked it (B's next refresh)."""
    a, b = await make_client(), await make_client()
    agent = await register(a)
    other = await register(a, "edge-02")
    auth = {"Authorization": f"Bearer {agent['agent_token']}"}
    assert (await b.get("/config", headers=auth)).status == 200  # B now trusts it
    deleted = await a.delete(f"/agents/{agent['agent_id']}", headers=ADMIN)
    assert deleted.status == 204
    assert (await a.get("/config", headers=auth)).status == 401
    await b.app[keys.CACHE].refresh()
    assert (await b.get("/config", headers=auth)).status == 401
    other_auth = {"Authorization": f"Bearer {other['agent_token']}"}
    assert (await b.get("/config", headers=other_auth)).status == 200


async def test_revocation_without_hints_lands_within_the_refresh(
    make_client: ClientFactory,
) -> None:
    """With no Redis, the other replica refuses the token within about a second."""
    a, b = await make_client(), await make_client()
    agent = await register(a)
    auth = {"Authorization": f"Bearer {agent['agent_token']}"}
    assert (await b.get("/config", headers=auth)).status == 200
    await a.delete(f"/agents/{agent['agent_id']}", headers=ADMIN)

    async def refused() -> bool:
        return (await b.get("/config", headers=auth)).status == 401

    await eventually(refused, timeout_seconds=3)
