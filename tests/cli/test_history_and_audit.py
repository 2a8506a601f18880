"""`config set --comment`, `config rollback`, `config diff`, `config history` with who and
why, and `audit` / `audit verify`, against a real controller process."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.cli.conftest import EXIT_REFUSED, EXIT_USAGE, Cli

pytestmark = pytest.mark.e2e

EXIT_CHAIN_BROKEN = 6


async def _publish(cli: Cli, *urls: str) -> None:
    for url in urls:
        result = await cli("config", "set", url)
        assert result.exit_code == 0, result.stderr


async def test_comment_and_rollback_show_in_history_and_show(cli: Cli) -> None:
    """--comment is kept with the version; rollback N publishes N's config, marked as such."""
    first = await cli("config", "set", "https://example.org/a", "--comment", "déjà vu")
    assert first.exit_code == 0, first.stderr
    await _publish(cli, "https://example.org/b")
    rolled = await cli("config", "rollback", "1", "--comment", "b broke")
    assert rolled.exit_code == 0, rolled.stderr
    assert rolled.stdout.startswith("published version 3 with version 1's configuration (")
    again = await cli("config", "rollback", "1", "--json")
    assert again.json()["created"] is False
    assert (again.json()["version"], again.json()["rolled_back_to"]) == (3, 1)
    lines = (await cli("config", "history")).stdout.splitlines()
    assert lines[1].split()[-6:] == ["*", "admin", "1", "https://example.org/a", "b", "broke"]
    assert lines[3].split()[-5:] == ["admin", "-", "https://example.org/a", "déjà", "vu"]
    shown = (await cli("config", "show", "3")).stdout
    assert "created by      admin" in shown
    assert "comment         b broke" in shown
    assert "rolled back to  1" in shown
    page = (await cli("config", "history", "--json")).json()
    assert [item["rolled_back_to"] for item in page["items"]] == [1, None, None, None]


async def test_rollback_refusals_exit_3_or_2(cli: Cli) -> None:
    """An unknown version is the controller's 404, a stale --if-match ETag its 412 (a stale
    version number exits 3 before anything is sent); a comment with a newline never leaves
    the command."""
    await _publish(cli, "https://example.org/a", "https://example.org/b")
    unknown = await cli("config", "rollback", "9")
    assert unknown.exit_code == EXIT_REFUSED
    assert "404" in unknown.error_line()
    stale = await cli("config", "rollback", "1", "--if-match", "1")
    assert stale.exit_code == EXIT_REFUSED
    assert "not the current version" in stale.error_line()
    stale_tag = await cli("config", "rollback", "1", "--if-match", '"2-0000000000000000"')
    assert stale_tag.exit_code == EXIT_REFUSED
    assert "412" in stale_tag.error_line()
    ok = await cli("config", "rollback", "1", "--if-match", "2")
    assert ok.exit_code == 0, ok.stderr
    newline = await cli("config", "set", "https://example.org/c", "--comment", "a\nb")
    assert newline.exit_code == EXIT_USAGE
    too_long = await cli("config", "set", "https://example.org/c", "--comment", "x" * 501)
    assert too_long.exit_code == EXIT_REFUSED
    assert "X-Change-Comment" in too_long.error_line()
    history = (await cli("config", "history", "--json")).json()
    assert history["total"] == 4


async def test_config_diff_shows_what_changed(cli: Cli) -> None:
    """`config diff A B` is a unified diff of the two configurations; equal ones say so."""
    await _publish(cli, "https://example.org/a", "https://example.org/b")
    diff = await cli("config", "diff", "1", "2")
    assert diff.exit_code == 0, diff.stderr
    assert diff.stdout.splitlines() == [
        "--- version 1",
        "+++ version 2",
        "@@ -1,3 +1,3 @@",
        " {",
        '-  "url": "https://example.org/a"',
        '+  "url": "https://example.org/b"',
        " }",
    ]
    same = await cli("config", "diff", "2", "2")
    assert same.stdout.strip() == "versions 2 and 2 hold the same configuration"
    data = (await cli("config", "diff", "0", "1", "--json")).json()
    assert (data["from"], data["to"], data["same"]) == (0, 1, False)
    assert '+  "url": "https://example.org/a"' in data["diff"]
    missing = await cli("config", "diff", "1", "9")
    assert missing.exit_code == EXIT_REFUSED


async def test_audit_lists_newest_first_and_pages(cli: Cli) -> None:
    """`audit` shows each entry's seq, actor, action and target, newest first."""
    await _publish(cli, "https://example.org/a", "https://example.org/b")
    await cli("settings", "poll-interval", "7")
    text = await cli("audit", "--limit", "2")
    assert text.exit_code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["SEQ", "AT", "ACTOR", "ACTION", "TARGET", "DETAIL"]
    assert lines[1].split()[:1] + lines[1].split()[3:6] == [
        "3",
        "admin",
        "settings.update",
        "settings",
    ]
    assert lines[2].split()[3:6] == ["admin", "config.publish", "config/versions/2"]
    assert lines[3] == "entries 1-2 of 3; --offset 2 for more"
    data = (await cli("audit", "--json", "--offset", "2")).json()
    assert [entry["seq"] for entry in data["entries"]] == [1]


async def test_audit_verify_exits_6_once_an_entry_is_edited(cli: Cli, tmp_path: Path) -> None:
    """`audit verify` is 0 on an intact chain and 6, naming the entry, after an edit."""
    await _publish(cli, "https://example.org/a", "https://example.org/b")
    intact = await cli("audit", "verify")
    assert intact.exit_code == 0, intact.stderr
    assert intact.stdout.splitlines()[0].split() == ["chain", "intact"]
    with sqlite3.connect(tmp_path / "controller.db") as db:
        db.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
    broken = await cli("audit", "verify", "--json")
    assert broken.exit_code == EXIT_CHAIN_BROKEN
    assert (broken.json()["ok"], broken.json()["first_bad_seq"]) == (False, 1)
    assert "broken at entry 1" in broken.error_line()
