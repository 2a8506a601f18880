"""Values from the controller reach the operator's terminal as text, never as control codes."""

from __future__ import annotations

import io

import aiohttp

from cli.console import Console
from cli.render import printable
from tests.cli.conftest import REGISTRATION, Cli
from tests.support.processes import ServiceProcess

# A label value that would turn the terminal red and retitle the window if printed raw.
HOSTILE = "\x1b[31mred\x1b]0;owned\x07\u202eevil\x9b2J"


def test_printable_escapes_every_control_character() -> None:
    """C0, C1, bidi overrides and separators are shown as escapes; plain text is untouched."""
    assert printable("edge-01 ünïcödé ✓") == "edge-01 ünïcödé ✓"
    assert printable(HOSTILE) == "\\x1b[31mred\\x1b]0;owned\\x07\\u202eevil\\x9b2J"
    assert printable("a\nb\tc\u2028d") == "a\\x0ab\\x09c\\u2028d"
    assert printable("a\nb\tc", keep="\n") == "a\nb\\x09c"


def test_console_text_keeps_lines_and_escapes_the_rest() -> None:
    """A text result keeps its line breaks; JSON escapes controls as JSON does."""
    text = io.StringIO()
    Console(json=False, out=text).emit({}, f"one\nlabel={HOSTILE}")
    assert text.getvalue() == f"one\nlabel={printable(HOSTILE)}\n"
    as_json = io.StringIO()
    Console(json=True, out=as_json).emit({"label": HOSTILE}, "")
    assert "\x1b" not in as_json.getvalue()
    assert "\\u001b" in as_json.getvalue()


async def test_agents_list_shows_a_hostile_label_inert(
    cli: Cli, controller: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    """`agents list` and `agents show` print a label holding escape sequences as escapes."""
    async with http.post(
        f"{controller.url}/register",
        json={"hostname": "edge-01", "labels": {"note": HOSTILE}},
        headers=REGISTRATION,
    ) as resp:
        assert resp.status == 201, await resp.text()
        agent_id = (await resp.json())["agent_id"]
    for args in (("agents", "list"), ("agents", "show", agent_id)):
        result = await cli(*args)
        assert result.exit_code == 0, result.stderr
        assert "\x1b" not in result.stdout
        assert "\x9b" not in result.stdout
        assert "\u202e" not in result.stdout
        assert printable(HOSTILE) in result.stdout
