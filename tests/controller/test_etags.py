"""Parsing If-Match and If-None-Match."""

from __future__ import annotations

import pytest

from controller.etags import if_match_versions, if_none_match_hits


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("*", None),
        ('"3"', frozenset({3})),
        ('"3", "4"', frozenset({3, 4})),
        ('W/"3"', frozenset()),
        ("3", frozenset()),
        ('"x"', frozenset()),
        ("", frozenset()),
    ],
)
def test_if_match_versions(header: str | None, expected: frozenset[int] | None) -> None:
    """If-Match accepts strong version tags; anything else matches nothing."""
    assert if_match_versions(header) == expected


@pytest.mark.parametrize(
    ("header", "hit"),
    [
        (None, False),
        ('"7"', True),
        ('W/"7"', True),
        ('"6", "7"', True),
        ("*", True),
        ('"6"', False),
        ("7", False),
        ('"', False),
    ],
)
def test_if_none_match_hits(header: str | None, hit: bool) -> None:
    """If-None-Match compares weakly and honours *."""
    assert if_none_match_hits(header, 7) is hit
