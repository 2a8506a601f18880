"""The console at /console as a test drives it: a headless Chromium tab, signed in with a
token typed into the page, switched between views, waited on and photographed.

Screenshots go to the test's own folder (its path is printed); with
``CONSOLE_README_IMAGES`` set (``make screenshots``), the ones the README shows are
copied there too.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Final

from tests.support.browser import Page

# The page polls the API every 1.5 s; a live change shows within a few polls, and the
# bound holds on a machine twice as slow as this one.
SHOW_TIMEOUT_SECONDS: Final = 20.0
POLL_STEP_SECONDS: Final = 0.1
# How much of the page's text a timed-out wait quotes.
SHOWN_CHARS: Final = 2_000
VIEWPORT: Final = (1280, 900)
README_IMAGES_VARIABLE: Final = "CONSOLE_README_IMAGES"
# The screenshots the README shows, by the name the test gives them.
README_IMAGES: Final = {"fleet": "console-fleet.png"}


def js(value: Any) -> str:
    """``value`` as a JavaScript literal (JSON is one)."""
    return json.dumps(value)


class Console:
    """One tab on the console of the controller at ``base_url``."""

    def __init__(self, page: Page, base_url: str, shots: Path) -> None:
        self.page = page
        self.base_url = base_url
        self.shots = shots

    async def open(self) -> None:
        await self.page.set_viewport(*VIEWPORT)
        await self.page.navigate(f"{self.base_url}/console")
        await self.wait_for(
            "document.getElementById('login')?.hidden === false", "the sign-in form"
        )

    async def sign_in(self, token: str) -> None:
        """Type ``token`` into the sign-in form and submit it, as an operator would."""
        await self.page.evaluate("document.getElementById('token').focus()")
        await self.page.insert_text(token)
        await self.click("#login-form button[type=submit]")

    async def sign_in_as(self, token: str) -> None:
        await self.sign_in(token)
        await self.wait_for("document.getElementById('app').hidden === false", "the signed-in page")

    async def sign_out(self) -> None:
        await self.click("#sign-out")
        await self.wait_for("document.getElementById('login').hidden === false", "signed out")

    async def show(self, view: str) -> None:
        await self.page.evaluate(f"location.hash = {js('#' + view)}")
        await self.wait_for(
            f"document.getElementById({js('view-' + view)}).hidden === false", f"the {view} view"
        )

    async def click(self, selector: str) -> None:
        found = await self.page.evaluate(
            f"(() => {{ const n = document.querySelector({js(selector)}); "
            "if (!n) return false; n.click(); return true; })()"
        )
        assert found, f"nothing on the page matches {selector}"

    async def text(self, selector: str) -> str:
        value = await self.page.evaluate(
            f"document.querySelector({js(selector)})?.textContent ?? ''"
        )
        return str(value)

    async def count(self, selector: str) -> int:
        return int(await self.page.evaluate(f"document.querySelectorAll({js(selector)}).length"))

    async def wait_for(
        self, expression: str, what: str, *, timeout_seconds: float = SHOW_TIMEOUT_SECONDS
    ) -> Any:
        """Poll ``expression`` in the page until it is truthy; its value."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            value = await self.page.evaluate(expression)
            if value:
                return value
            if time.monotonic() >= deadline:
                shown = await self.text("body")
                await self.shot("timed-out")
                raise AssertionError(
                    f"the console did not show {what} within {timeout_seconds} s; it shows "
                    f"{shown[:SHOWN_CHARS]!r}; script errors: {self.page.exceptions}"
                )
            await asyncio.sleep(POLL_STEP_SECONDS)

    async def wait_for_text(self, selector: str, *fragments: str) -> str:
        """Wait until ``selector``'s text holds every fragment; that text."""
        checks = " && ".join(f"t.includes({js(f)})" for f in fragments)
        expression = (
            f"(() => {{ const t = document.querySelector({js(selector)})?.textContent ?? ''; "
            f"return ({checks}) ? t : ''; }})()"
        )
        return str(await self.wait_for(expression, f"{fragments} in {selector}"))

    async def shot(self, name: str) -> Path:
        """A screenshot into the test's folder (and the README's, when asked for)."""
        path = await self.page.screenshot(self.shots / f"{name}.png")
        print(f"console screenshot: {path}")
        target = os.environ.get(README_IMAGES_VARIABLE)
        if target and name in README_IMAGES:
            await asyncio.to_thread(_copy, path, Path(target) / README_IMAGES[name])
        return path


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
