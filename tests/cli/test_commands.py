"""Each ``fleetconf`` command, in text and --json, against a real controller process."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from controller.etags import etag_for
from tests.cli.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    REGISTRATION_TOKEN,
    SCRIPT_COMMAND,
    Cli,
    register,
)
from tests.support.processes import LOOPBACK, ServiceProcess
from tests.support.services import refused_port

pytestmark = pytest.mark.e2e


def _pairs(text: str) -> dict[str, str]:
    """``name  value`` lines (names may hold one space) as a dict."""
    pairs = (re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in text.splitlines())
    return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}


async def test_config_get_shows_version_and_configuration(cli: Cli) -> None:
    """`config get`: version 0 and its null URL as text, then the posted one as JSON."""
    text = await cli("config", "get")
    assert text.exit_code == 0, text.stderr
    assert text.stdout.split() == ["version", "0", "url", "-"]
    assert (await cli("config", "set", "https://example.org/a")).exit_code == 0
    data = (await cli("config", "get", "--json")).json()
    etag = etag_for(1, '{"url":"https://example.org/a"}')
    assert data == {"version": 1, "etag": etag, "config": {"url": "https://example.org/a"}}


async def test_config_set_from_url_file_and_stdin(cli: Cli, tmp_path: Path) -> None:
    """`config set` takes a URL, a JSON file or stdin; the same config again creates nothing."""
    first = await cli("config", "set", "https://example.org/a")
    assert first.exit_code == 0, first.stderr
    assert first.stdout.startswith("published version 1 (")
    config_file = tmp_path / "config.json"
    config_file.write_text('{"url": "https://example.org/b"}')
    second = await cli("--json", "config", "set", "--file", str(config_file))
    assert second.json()["version"] == 2
    assert second.json()["created"] is True
    assert set(second.json()) == {"version", "etag", "created_at", "created"}
    third = await cli("config", "set", "--file", "-", stdin=b'{"url": "https://example.org/c"}')
    assert third.stdout.startswith("published version 3 (")
    again = await cli("config", "set", "https://example.org/c")
    assert again.exit_code == 0
    assert again.stdout.strip() == "unchanged: version 3 already holds this configuration"
    unchanged = await cli("config", "set", "https://example.org/c", "--json")
    assert (unchanged.json()["version"], unchanged.json()["created"]) == (3, False)
    missing = await cli("config", "set", "--file", str(tmp_path / "absent.json"))
    assert missing.exit_code == EXIT_USAGE
    assert "absent.json" in missing.error_line()
    both = await cli("config", "set", "https://example.org/d", "--file", str(config_file))
    assert both.exit_code == EXIT_USAGE


async def test_config_set_if_match_is_compare_and_set(cli: Cli) -> None:
    """--if-match N publishes only while version N is current (exit 3 and nothing sent
    otherwise); --if-match ETAG sends the tag, and a stale one is the controller's 412."""
    await cli("config", "set", "https://example.org/a")
    ok = await cli("config", "set", "https://example.org/b", "--if-match", "1")
    assert ok.exit_code == 0, ok.stderr
    stale = await cli("config", "set", "https://example.org/c", "--if-match", "1")
    assert stale.exit_code == EXIT_REFUSED
    assert stale.stdout == ""
    assert stale.error_line() == (
        "fleetconf: version 1 is not the current version (2); nothing was published"
    )
    current = (await cli("config", "get", "--json")).json()
    assert current["version"] == 2
    by_tag = await cli("config", "set", "https://example.org/c", "--if-match", current["etag"])
    assert by_tag.exit_code == 0, by_tag.stderr
    unquoted = current["etag"].strip('"')
    refused = await cli("config", "set", "https://example.org/d", "--if-match", unquoted)
    assert refused.exit_code == EXIT_REFUSED
    assert refused.error_line().startswith("fleetconf: the controller answered 412 ")
    assert (await cli("config", "get", "--json")).json()["version"] == 3


async def test_invalid_configuration_is_refused_in_one_line(cli: Cli) -> None:
    """A config the controller refuses (422) is one stderr line naming the field; exit 3."""
    result = await cli("config", "set", "ftp://example.org/")
    assert result.exit_code == EXIT_REFUSED
    line = result.error_line()
    assert line.startswith("fleetconf: the controller answered 422 Unprocessable Content: ")
    assert "(url: " in line
    garbage = await cli("config", "set", "--file", "-", stdin=b"{not json")
    assert garbage.exit_code == EXIT_REFUSED
    assert "not valid JSON" in garbage.error_line()


async def test_config_history_and_show(cli: Cli) -> None:
    """`config history` pages newest first and marks the current version; `config show N`
    shows one version; an unknown N is the controller's 404."""
    for name in ("a", "b", "c"):
        stored = await cli("config", "set", f"https://example.org/{name}")
        assert stored.exit_code == 0, stored.stderr
    text = await cli("config", "history", "--limit", "2")
    lines = text.stdout.splitlines()
    assert lines[0].split() == [
        "VERSION",
        "CREATED",
        "CURRENT",
        "BY",
        "ROLLBACK",
        "TO",
        "URL",
        "COMMENT",
    ]
    assert lines[1].split()[0] == "3"
    assert lines[1].split()[-5:] == ["*", "admin", "-", "https://example.org/c", "-"]
    assert lines[2].split()[0] == "2"
    assert "*" not in lines[2]
    assert lines[3] == "versions 1-2 of 4; --offset 2 for more"
    page = (await cli("config", "history", "--json", "--offset", "2")).json()
    assert [item["version"] for item in page["items"]] == [1, 0]
    assert (page["total"], page["limit"], page["offset"]) == (4, 100, 2)
    assert page["items"][1]["config"] == {"url": None}
    beyond = await cli("config", "history", "--offset", "9")
    assert beyond.stdout.splitlines()[-1] == "no versions at offset 9 (total 4)"
    bad_limit = await cli("config", "history", "--limit", "501")
    assert bad_limit.exit_code == EXIT_REFUSED
    assert "limit" in bad_limit.error_line()

    shown = await cli("config", "show", "2")
    assert shown.stdout.splitlines()[0].split() == ["version", "2"]
    assert shown.stdout.splitlines()[-1].split() == ["url", "https://example.org/b"]
    current = (await cli("config", "show", "3", "--json")).json()
    assert (current["version"], current["current"]) == (3, True)
    assert current["config"] == {"url": "https://example.org/c"}
    unknown = await cli("config", "show", "9")
    assert unknown.exit_code == EXIT_REFUSED
    assert "404" in unknown.error_line()
    negative = await cli("config", "show", "-1")
    assert negative.exit_code == EXIT_USAGE


async def test_settings_poll_interval_show_and_set(cli: Cli) -> None:
    """`settings poll-interval` shows the interval, with N sets it; out of range is a 422."""
    assert (await cli("settings", "poll-interval")).stdout.strip() == "poll interval: 1 s"
    changed = await cli("settings", "poll-interval", "15")
    assert changed.stdout.startswith("poll interval: 15 s")
    data = (await cli("settings", "poll-interval", "--json")).json()
    assert data == {"poll_interval_seconds": 15}
    refused = await cli("settings", "poll-interval", "0")
    assert refused.exit_code == EXIT_REFUSED
    assert "poll_interval_seconds" in refused.error_line()


async def test_agents_list_show_and_revoke(
    cli: Cli, controller: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    """`agents list/show/revoke` as text and JSON; a revoked agent is gone (404, exit 3)."""
    # These agents never poll: a long interval keeps them `behind`, not `stale`, however
    # slowly the commands below run (stale means three intervals without contact).
    assert (await cli("settings", "poll-interval", "60")).exit_code == 0
    first = await register(http, controller, "edge-01")
    second = await register(http, controller, "edge-02")
    text = await cli("agents", "list")
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["ID", "HOSTNAME", "STATE", "APPLIED", "LAST", "SEEN", "LABELS"]
    assert lines[1].split() == [first, "edge-01", "behind", "-", "-", "site=ams1"]
    assert lines[2].split()[:2] == [second, "edge-02"]
    assert lines[3] == "agents 1-2 of 2"
    page = (await cli("agents", "list", "--json", "--limit", "1", "--offset", "1")).json()
    assert [agent["id"] for agent in page["items"]] == [second]
    assert (page["total"], page["limit"], page["offset"]) == (2, 1, 1)
    stale = (await cli("agents", "list", "--json", "--state", "stale")).json()
    assert stale["items"] == []

    shown = _pairs((await cli("agents", "show", first)).stdout)
    assert (shown["id"], shown["hostname"], shown["labels"]) == (first, "edge-01", "site=ams1")
    assert (shown["state"], shown["applied version"], shown["last seen"]) == ("behind", "-", "-")
    assert (await cli("agents", "show", first, "--json")).json()["hostname"] == "edge-01"

    revoked = await cli("agents", "revoke", first, "--json")
    assert revoked.json() == {"id": first, "revoked": True}
    again = await cli("agents", "revoke", first)
    assert again.exit_code == EXIT_REFUSED
    assert "404" in again.error_line()
    gone = await cli("agents", "show", first)
    assert gone.exit_code == EXIT_REFUSED
    sneaky = await cli("agents", "show", "../config")
    assert sneaky.exit_code == EXIT_REFUSED
    assert "404" in sneaky.error_line()
    assert [a["id"] for a in (await cli("agents", "list", "--json")).json()["items"]] == [second]


async def test_fleet_summary(
    cli: Cli, controller: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    """`fleet`: the convergence summary, as aligned text and as the controller's JSON."""
    await cli("config", "set", "https://example.org/a")
    # The agent never polls: a long interval keeps it `behind`, not `stale`.
    assert (await cli("settings", "poll-interval", "60")).exit_code == 0
    await register(http, controller, "edge-01")
    text = await cli("fleet")
    assert _pairs(text.stdout) == {
        "current version": "1",
        "poll interval": "60 s",
        "agents": "1 (0 in_sync, 1 behind, 0 drift, 0 stale)",
        "converged": "0% of live agents (0/1)",
        "applied versions": "none yet: 1 agent",
    }
    data = (await cli("fleet", "--json")).json()
    assert (data["current_version"], data["agents"], data["behind"]) == (1, 1, 1)
    async with http.get(f"{controller.url}/fleet", headers=ADMIN) as resp:
        assert data == await resp.json()


async def test_console_script_and_options_after_the_command(cli: Cli) -> None:
    """The installed `fleetconf` script works like `python -m cli`; --json goes anywhere."""
    script = Cli(cli.env, SCRIPT_COMMAND)
    assert (await script("--json", "config", "get")).json()["version"] == 0
    assert (await script("config", "--json", "get")).json()["version"] == 0
    assert (await script("--version")).stdout.startswith("fleetconf ")
    usage = await script()
    assert usage.exit_code == EXIT_USAGE


# -- credentials and where the controller is ------------------------------------------


async def test_bad_or_wrong_role_token_is_one_line_and_exit_3(cli: Cli) -> None:
    """A token nobody issued is 401, the registration token 403: one stderr line, exit 3,
    and the token never printed."""
    for token, status in (("not-the-admin-token-123", 401), (REGISTRATION_TOKEN, 403)):
        result = await cli.with_env(FLEETCONF_ADMIN_TOKEN=token)("config", "history")
        assert result.exit_code == EXIT_REFUSED
        assert result.stdout == ""
        assert result.error_line().startswith(f"fleetconf: the controller answered {status} ")
        assert token not in result.stderr


async def test_missing_token_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    """No token anywhere, an empty token file or a missing one: exit 2 before any request."""
    bare = cli.with_env(FLEETCONF_ADMIN_TOKEN=None)
    result = await bare("fleet")
    assert result.exit_code == EXIT_USAGE
    assert "FLEETCONF_ADMIN_TOKEN" in result.error_line()
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert (await bare("--token-file", str(empty), "fleet")).exit_code == EXIT_USAGE
    absent = await bare.with_env(FLEETCONF_ADMIN_TOKEN_FILE=str(tmp_path / "absent"))("fleet")
    assert absent.exit_code == EXIT_USAGE
    assert "FLEETCONF_ADMIN_TOKEN_FILE" in absent.error_line()


async def test_token_files_and_flags_override_the_environment(
    cli: Cli, controller: ServiceProcess, tmp_path: Path
) -> None:
    """FLEETCONF_ADMIN_TOKEN_FILE stands for the token; --token-file and --controller-url
    win over the environment."""
    token_file = tmp_path / "admin_token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    from_file = cli.with_env(FLEETCONF_ADMIN_TOKEN=None, FLEETCONF_ADMIN_TOKEN_FILE=str(token_file))
    assert (await from_file("fleet")).exit_code == 0
    wrong = cli.with_env(
        FLEETCONF_ADMIN_TOKEN="wrong-token-456", CONTROLLER_URL=f"http://{LOOPBACK}:1"
    )
    assert controller.url is not None
    flags = ["--token-file", str(token_file), "--controller-url", controller.url + "/"]
    assert (await wrong(*flags, "fleet")).exit_code == 0


@pytest.mark.parametrize(
    "url", ["ftp://example.org", "not a url", "http://", "http://admin:pw@127.0.0.1:8000"]
)
async def test_unusable_controller_url_is_a_usage_error(cli: Cli, url: str) -> None:
    """A controller URL that is not plain http(s) is refused locally: exit 2, one line."""
    result = await cli("--controller-url", url, "fleet")
    assert result.exit_code == EXIT_USAGE
    assert result.error_line().startswith("fleetconf: the controller URL")


async def test_unreachable_controller_is_exit_4() -> None:
    """Nothing listening: one line saying the connection was refused, exit 4."""
    with refused_port() as port:  # no other test's controller can take it meanwhile
        cli = Cli(
            {"CONTROLLER_URL": f"http://{LOOPBACK}:{port}", "FLEETCONF_ADMIN_TOKEN": ADMIN_TOKEN}
        )
        result = await cli("config", "get")
    assert result.exit_code == EXIT_UNREACHABLE
    assert result.stdout == ""
    assert result.error_line() == (
        f"fleetconf: cannot connect to the controller at http://{LOOPBACK}:{port}: "
        "Connection refused"
    )


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen(8)
        yield sock.getsockname()[1]


async def test_controller_that_does_not_answer_is_exit_4(silent_listener: int) -> None:
    """A controller that accepts but never answers: exit 4 after the request time limit."""
    url = f"http://{LOOPBACK}:{silent_listener}"
    cli = Cli(
        {
            "CONTROLLER_URL": url,
            "FLEETCONF_ADMIN_TOKEN": ADMIN_TOKEN,
            "FLEETCONF_REQUEST_TIMEOUT_SECONDS": "1",
        }
    )
    started = asyncio.get_running_loop().time()
    result = await cli("fleet")
    assert result.exit_code == EXIT_UNREACHABLE
    assert result.error_line() == f"fleetconf: the controller at {url} did not answer within 1 s"
    assert asyncio.get_running_loop().time() - started < 10


async def test_something_else_on_the_port_is_described_not_dumped() -> None:
    """A server that is not a fleetconf controller (HTML errors, non-JSON bodies): exit 3."""

    async def html(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>bad gateway</html>", content_type="text/html")

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/fleet", html)
    app.router.add_get("/settings", text)
    server = TestServer(app, host=LOOPBACK)
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        cli = Cli({"CONTROLLER_URL": url, "FLEETCONF_ADMIN_TOKEN": ADMIN_TOKEN})
        gateway = await cli("fleet")
        assert gateway.exit_code == EXIT_REFUSED
        assert gateway.error_line() == (
            "fleetconf: the controller answered 502 Bad Gateway: not a fleetconf answer (text/html)"
        )
        plain = await cli("settings", "poll-interval")
        assert plain.exit_code == EXIT_REFUSED
        assert "not JSON" in plain.error_line()
        assert "hello" not in plain.stderr
    finally:
        await server.close()
