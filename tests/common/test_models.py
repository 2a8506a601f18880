"""The worker configuration's URL rule, shared by every service."""

from __future__ import annotations

import sys

import pytest
from pydantic import ValidationError

from common.models import SPACE_OR_CONTROL, WorkerConfig


def test_the_space_or_control_search_is_isspace_or_below_0x20_for_every_code_point() -> None:
    """The one regular expression refuses exactly what str.isspace() or a C0 control
    character would, over all of Unicode."""
    differ = [
        code
        for code in range(sys.maxunicode + 1)
        if (SPACE_OR_CONTROL.search(chr(code)) is not None) != (chr(code).isspace() or code < 0x20)
    ]
    assert differ == []


@pytest.mark.parametrize(
    "url",
    [
        "https://a.example/\u00a0x",
        "https://a.example/\u2028",
        "https://a.example/\x1f",
        "https://a.example/ x",
        "https://a.\u3000example/",
    ],
)
def test_a_url_with_white_space_or_a_control_character_is_refused(url: str) -> None:
    """Unicode white space and C0 controls anywhere in the URL are refused."""
    with pytest.raises(ValidationError, match="white space or control"):
        WorkerConfig(url=url)


def test_a_plain_url_is_kept_as_given() -> None:
    """A valid URL passes, unchanged."""
    assert WorkerConfig(url="https://a.example/x?y=1#z").url == "https://a.example/x?y=1#z"
