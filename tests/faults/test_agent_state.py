"""The agent's state files damaged on disk: detected by their checksum, never applied,
logged as ``state.corrupt``, and replaced by what the controller answers once it can.
A damaged configuration slot gives way to the other slot, the write before it (what a
crash in the middle of a write leaves), never to what the damaged one held.

Each damage is done with the agent stopped and its worker restarted empty (a power cut),
and the agent's path to the controller cut: the agent starts with the controller
unreachable, which is when its disk is all it has. The controller meanwhile moves on to
a new version, which the worker must get once the path is restored.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.storage import Storage
from tests.faults.conftest import MakeFleet
from tests.faults.fleet import (
    BACKOFF_MAX_SECONDS,
    MARGIN_SECONDS,
    POLL_INTERVAL_SECONDS,
    Fleet,
)
from tests.support.fleet import SETTLE_TIMEOUT_SECONDS
from tests.support.processes import Upstream, wait_until
from tests.support.state import config_slots, slot_holds

pytestmark = pytest.mark.e2e

# Controller attempts the agent makes, unanswered, before the worker is looked at: by then
# the reconciler has had its first turn (it runs as soon as the agent starts).
ATTEMPTS_BEFORE_CHECKING = 3
# Restored path: the next retry (at most the cap), a full answer, the hand-over.
CONVERGED_WITHIN_SECONDS = BACKOFF_MAX_SECONDS + POLL_INTERVAL_SECONDS + MARGIN_SECONDS
DAMAGED_URL = "https://damaged.example/"
# A field changed without fixing the checksum: a plausible file, but not the one written.
EDITS: dict[str, dict[str, Any]] = {
    "identity": {"agent_token": "forged-agent-token"},
    "config": {"version": 99, "config": {"url": DAMAGED_URL}},
}


def _truncate(path: Path) -> None:
    data = path.read_bytes().rstrip()  # the document, not the spaces after it
    path.write_bytes(data[: len(data) // 2])


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data.rstrip()) // 2  # in the document, not in the spaces after it
    for index in range(middle, middle + 4):
        data[index] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_a_field(path: Path) -> None:
    document = json.loads(path.read_bytes())
    document.update(EDITS[path.name.split(".")[0]])
    path.write_text(json.dumps(document))


DAMAGES: dict[str, Callable[[Path], None]] = {
    "truncated": _truncate,
    "flipped bytes": _flip_bytes,
    "field edited": _edit_a_field,
}


def _this_run(fleet: Fleet) -> str:
    return fleet.agent.log_text(current_run_only=True)


async def _restart_damaged(fleet: Fleet, path: Path, damage: str) -> None:
    """Stop the agent, crash the worker, damage ``path``; start both with the path cut."""
    assert fleet.link is not None
    await fleet.agent.stop()
    await fleet.worker.kill()
    DAMAGES[damage](path)
    fleet.link.cut()
    await fleet.worker.start()
    await fleet.agent.start()
    await wait_until(
        lambda: _this_run(fleet).count("controller.unreachable") >= ATTEMPTS_BEFORE_CHECKING,
        timeout_seconds=SETTLE_TIMEOUT_SECONDS,
        what="the restarted agent found the controller unreachable",
    )


def _assert_logged_corrupt(fleet: Fleet, path: Path, damage: str) -> None:
    line = f"state.corrupt path={path} reason="
    if damage == "field edited":
        line += "checksum mismatch"
    assert line in _this_run(fleet), (damage, _this_run(fleet))


async def _wait_state_saved(fleet: Fleet, version: int) -> None:
    """Both files whole again (checksums right), the configuration at ``version``."""
    store = Storage(fleet.state_dir)
    assert fleet.link is not None
    controller_url = fleet.link.rewrite(str(fleet.controller.url))

    def saved() -> bool:
        cached = store.load_config()
        identity = store.load_identity(controller_url)
        return identity is not None and cached is not None and cached.version == version

    await wait_until(saved, timeout_seconds=SETTLE_TIMEOUT_SECONDS, what="the state saved again")


async def _holding_two_versions(make_fleet: MakeFleet, upstream: Upstream) -> Fleet:
    """A fleet whose worker holds version 2 and whose agent saved both versions: each
    slot holds one."""
    fleet = await make_fleet(cuttable=True)
    await fleet.start_holding(upstream.respond("/start", "start"))
    await fleet.wait_worker_version(
        await fleet.publish(upstream.respond("/second", "second")),
        timeout_seconds=SETTLE_TIMEOUT_SECONDS,
    )
    await _wait_state_saved(fleet, 2)
    return fleet


async def test_damaged_config_slot_is_not_applied_and_is_fetched_again(
    make_fleet: MakeFleet, upstream: Upstream
) -> None:
    """A truncated, bit-flipped or edited configuration slot is logged and never handed to
    the worker. The worker gets what the other slot holds (the write before), or stays
    empty if it holds nothing whole, until the controller answers with the current
    version."""
    fleet = await _holding_two_versions(make_fleet, upstream)
    assert fleet.link is not None
    restored_from_older_slot = 0

    for damage in DAMAGES:
        damaged = fleet.newest_config_slot
        (older,) = set(config_slots(fleet.state_dir)) - {damaged}
        expected = slot_holds(older) or {"version": 0, "config": {"url": None}}
        await _restart_damaged(fleet, damaged, damage)
        url = upstream.respond(f"/{damage.replace(' ', '-')}", damage)
        version = await fleet.publish(url)
        _assert_logged_corrupt(fleet, damaged, damage)
        if expected["version"]:
            await fleet.wait_worker_version(
                int(str(expected["version"])), timeout_seconds=SETTLE_TIMEOUT_SECONDS
            )
            restored_from_older_slot += 1
        assert await fleet.worker_holds() == expected, damage

        fleet.link.restore()
        await fleet.wait_worker_version(version, timeout_seconds=CONVERGED_WITHIN_SECONDS)
        assert await fleet.worker_holds() == {"version": version, "config": {"url": url}}
        await _wait_state_saved(fleet, version)
        assert "agent.registered" not in _this_run(fleet), damage  # the identity was intact

    assert restored_from_older_slot >= 1
    assert DAMAGED_URL not in fleet.worker.log_text()
    assert "version=99" not in fleet.worker.log_text()


async def test_both_config_slots_damaged_leave_the_worker_empty(
    make_fleet: MakeFleet, upstream: Upstream
) -> None:
    """Both slots damaged: nothing is applied from disk; the worker stays empty until the
    controller answers."""
    fleet = await _holding_two_versions(make_fleet, upstream)
    assert fleet.link is not None
    first, second = config_slots(fleet.state_dir)
    _flip_bytes(first)
    await _restart_damaged(fleet, second, "field edited")
    url = upstream.respond("/after", "after")
    version = await fleet.publish(url)
    _assert_logged_corrupt(fleet, first, "flipped bytes")
    _assert_logged_corrupt(fleet, second, "field edited")
    assert await fleet.worker_holds() == {"version": 0, "config": {"url": None}}

    fleet.link.restore()
    await fleet.wait_worker_version(version, timeout_seconds=CONVERGED_WITHIN_SECONDS)
    assert await fleet.worker_holds() == {"version": version, "config": {"url": url}}
    assert DAMAGED_URL not in fleet.worker.log_text()


async def test_damaged_identity_file_is_not_used_and_the_agent_registers_again(
    make_fleet: MakeFleet, upstream: Upstream
) -> None:
    """A truncated, bit-flipped or edited identity.json is logged and never used: the worker
    is restored from the intact configuration, and the agent registers anew once it can."""
    fleet = await make_fleet(cuttable=True)
    url = upstream.respond("/start", "start")
    version = await fleet.start_holding(url)
    assert fleet.link is not None

    for damage in DAMAGES:
        await _restart_damaged(fleet, fleet.identity_path, damage)
        # The configuration on disk is whole: the worker gets it back without the controller.
        await fleet.wait_worker_version(version, timeout_seconds=SETTLE_TIMEOUT_SECONDS)
        assert await fleet.worker_holds() == {"version": version, "config": {"url": url}}
        _assert_logged_corrupt(fleet, fleet.identity_path, damage)
        url = upstream.respond(f"/{damage.replace(' ', '-')}", damage)
        version = await fleet.publish(url)

        fleet.link.restore()
        await fleet.wait_worker_version(version, timeout_seconds=CONVERGED_WITHIN_SECONDS)
        this_run = _this_run(fleet)
        assert this_run.count("agent.registered") == 1, damage
        # The damaged token was never tried: no 401 came back for it.
        assert "agent.identity_rejected" not in this_run, damage
        await _wait_state_saved(fleet, version)
