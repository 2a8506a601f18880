"""ETags with a digest of the content, and parsing If-Match and If-None-Match."""

from __future__ import annotations

import hashlib

import pytest

from controller.etags import etag_for, if_match_tags, if_none_match_hits

BODY = '{"url":"https://ip.me"}'
TAG = etag_for(7, BODY)
# Version 7 again, with other content: what a restored database could once have issued.
OTHER = etag_for(7, '{"url":"https://example.com"}')


def test_etag_names_version_and_digest() -> None:
    """An ETag is "<version>-<first 16 hex of sha256(body)>", from str or bytes alike."""
    digest = hashlib.sha256(BODY.encode()).hexdigest()[:16]
    assert f'"7-{digest}"' == TAG
    assert etag_for(7, BODY.encode()) == TAG


def test_different_content_never_shares_an_etag() -> None:
    """The same version number with other content gets another ETag."""
    assert OTHER != TAG
    assert OTHER.startswith('"7-')


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("*", None),
        (TAG, frozenset({TAG})),
        (f"{OTHER}, {TAG}", frozenset({OTHER, TAG})),
        (f"W/{TAG}", frozenset()),
        ('"7"', frozenset({'"7"'})),
        ("7", frozenset()),
        ('"a"b"', frozenset()),
        ("", frozenset()),
    ],
)
def test_if_match_tags(header: str | None, expected: frozenset[str] | None) -> None:
    """If-Match names strong tags; weak and malformed ones match nothing, * any."""
    assert if_match_tags(header) == expected


@pytest.mark.parametrize(
    ("header", "hit"),
    [
        (None, False),
        (TAG, True),
        (f"W/{TAG}", True),
        (f"{OTHER}, {TAG}", True),
        (f"{OTHER},{TAG}", True),
        ("*", True),
        (OTHER, False),
        (f"W/{OTHER}", False),
        ('"7"', False),
        ("7", False),
        ('"', False),
        (f" {TAG} ", True),
        (f"{OTHER}, *", True),
        (" * ", True),
        ('"a*b"', False),
        (f"{TAG}junk", False),
        (f'"x{TAG}"', False),
        (f"{OTHER}, W/{TAG}x", False),
    ],
)
def test_if_none_match_hits(header: str | None, hit: bool) -> None:
    """If-None-Match compares whole tags weakly and honours *; the same version with
    another digest, or a bare version number, does not match."""
    assert if_none_match_hits(header, TAG) is hit


def test_etag_of_text_and_bytes_is_the_same() -> None:
    """A body given as text is digested as its UTF-8 bytes."""
    body = '{"url":"https://example.org/caf\u00e9"}'
    assert etag_for(3, body) == etag_for(3, body.encode())
