"""``fleetconf credentials create/list/revoke`` against a real controller process."""

from __future__ import annotations

import re

import aiohttp
import pytest

from tests.cli.conftest import EXIT_REFUSED, EXIT_USAGE, Cli
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.e2e


def _pairs(text: str) -> dict[str, str]:
    pairs = (re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in text.splitlines())
    return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}


async def test_create_prints_the_token_once_and_says_so(
    cli: Cli, controller: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    """`credentials create` prints a working token once and says so; --json as well."""
    text = await cli("credentials", "create", "ci-deploy", "--role", "viewer")
    assert text.exit_code == 0, text.stderr
    *lines, note = text.stdout.splitlines()
    assert (
        note
        == "The token is shown only this once; the controller keeps only its hash. Store it now."
    )
    shown = _pairs("\n".join(lines))
    assert (shown["name"], shown["role"]) == ("ci-deploy", "viewer")
    assert shown["token"].startswith("fc_")
    async with http.get(
        f"{controller.url}/fleet", headers={"Authorization": f"Bearer {shown['token']}"}
    ) as resp:
        assert resp.status == 200
    data = (await cli("--json", "credentials", "create", "ops", "--role", "admin")).json()
    assert set(data) == {"name", "role", "token", "created_at"}
    assert (data["name"], data["role"]) == ("ops", "admin")
    listed = await cli("credentials", "list")
    assert shown["token"] not in listed.stdout
    assert data["token"] not in listed.stdout


async def test_list_and_revoke(cli: Cli) -> None:
    """`credentials list` pages who issued what and what is revoked; `revoke` works once."""
    for name, role in (("alice", "admin"), ("bob", "viewer"), ("carol", "viewer")):
        assert (await cli("credentials", "create", name, "--role", role)).exit_code == 0
    revoked = await cli("credentials", "revoke", "bob")
    assert revoked.stdout.strip() == "revoked credential bob"
    lines = (await cli("credentials", "list", "--limit", "2")).stdout.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "CREATED", "CREATED", "BY", "REVOKED"]
    assert lines[1].split()[:2] == ["alice", "admin"]
    assert lines[1].split()[-2:] == ["admin", "-"]
    assert lines[2].split()[:2] == ["bob", "viewer"]
    assert lines[2].split()[-1] != "-"
    assert lines[3] == "credentials 1-2 of 3; --offset 2 for more"
    page = (await cli("credentials", "list", "--json", "--offset", "2")).json()
    assert [item["name"] for item in page["items"]] == ["carol"]
    assert (page["total"], page["offset"]) == (3, 2)
    again = await cli("credentials", "revoke", "bob", "--json")
    assert again.exit_code == EXIT_REFUSED
    assert "404" in again.error_line()
    assert (await cli("credentials", "revoke", "carol", "--json")).json() == {
        "name": "carol",
        "revoked": True,
    }


async def test_refusals_are_one_line(cli: Cli) -> None:
    """409, 422, a bad role and a viewer's 403 are each one stderr line, stdout empty."""
    await cli("credentials", "create", "taken", "--role", "viewer")
    taken = await cli("credentials", "create", "taken", "--role", "admin")
    assert taken.exit_code == EXIT_REFUSED
    assert taken.stdout == ""
    assert taken.error_line().startswith("fleetconf: the controller answered 409 ")
    invalid = await cli("credentials", "create", "has space", "--role", "viewer")
    assert invalid.exit_code == EXIT_REFUSED
    assert "422" in invalid.error_line()
    assert (await cli("credentials", "create", "x")).exit_code == EXIT_USAGE
    assert (await cli("credentials", "create", "x", "--role", "agent")).exit_code == EXIT_USAGE
    token = (await cli("--json", "credentials", "create", "looker", "--role", "viewer")).json()
    as_viewer = cli.with_env(FLEETCONF_ADMIN_TOKEN=token["token"])
    assert (await as_viewer("fleet")).exit_code == 0
    for args in (("credentials", "list"), ("credentials", "revoke", "taken")):
        refused = await as_viewer(*args)
        assert refused.exit_code == EXIT_REFUSED
        assert refused.error_line().startswith("fleetconf: the controller answered 403 ")


async def test_a_hostile_name_stays_one_path_segment_and_prints_inert(cli: Cli) -> None:
    """A name with escapes and ../ reaches no other route and no raw control character prints."""
    hostile = "\x1b[31m../config\x07"
    for args in (("revoke", hostile), ("create", hostile, "--role", "viewer")):
        result = await cli("credentials", *args)
        assert result.exit_code == EXIT_REFUSED
        assert result.stdout == ""
        assert re.search(r"answered (404|422) ", result.error_line())
        assert "\x1b" not in result.stderr
        assert "\x07" not in result.stderr
