"""ETags of configuration versions, the conditional headers that name them, and the
version numbers headers and paths carry.

A version's ETag is ``"<version>-<digest>"``: the number, and the first 16 hex digits of
the SHA-256 of the canonical JSON body. Two different configurations never share an
ETag, even when a restored database hands out a number a second time. Conditions compare
whole tags: a tag naming the same number with another digest matches nothing.
"""

from __future__ import annotations

import hashlib
from typing import Final

from common.constants import MAX_CONFIG_VERSION

ANY: Final = "*"
WEAK_PREFIX: Final = "W/"
# Hex digits of the body's SHA-256 kept in the ETag: 64 bits.
ETAG_DIGEST_HEX_DIGITS: Final = 16
_MAX_VERSION_DIGITS: Final = len(str(MAX_CONFIG_VERSION))


def etag_for(version: int, body: str | bytes) -> str:
    """The strong ETag of version ``version`` whose canonical JSON body is ``body``."""
    data = body.encode() if isinstance(body, str) else body
    digest = hashlib.sha256(data).hexdigest()[:ETAG_DIGEST_HEX_DIGITS]
    return f'"{version}-{digest}"'


def _tags(header: str) -> list[str]:
    return [part.strip() for part in header.split(",") if part.strip()]


def _strong_form(tag: str, *, weak_ok: bool) -> str | None:
    """``tag`` as a strong tag (``"…"``); None if it is malformed, or weak when not allowed."""
    if tag.startswith(WEAK_PREFIX):
        if not weak_ok:
            return None
        tag = tag[len(WEAK_PREFIX) :]
    if len(tag) < 2 or not (tag[0] == tag[-1] == '"') or '"' in tag[1:-1]:
        return None
    return tag


def parse_version(raw: str) -> int | None:
    """A version number: ASCII digits up to MAX_CONFIG_VERSION; None for anything else."""
    if raw.isascii() and raw.isdigit() and len(raw) <= _MAX_VERSION_DIGITS:
        number = int(raw)
        if number <= MAX_CONFIG_VERSION:
            return number
    return None


def tag_version(header: str | None) -> int | None:
    """The version an agent's If-None-Match names (one tag, ``"<version>-<digest>"``, weak
    or strong): the version it holds. None when the header names no single version."""
    tags = [] if header is None else _tags(header)
    tag = _strong_form(tags[0], weak_ok=True) if len(tags) == 1 else None
    if tag is None:
        return None
    number, dash, _ = tag[1:-1].partition("-")
    return parse_version(number) if dash else None


def strong_tag_version(raw: str) -> int | None:
    """The version a single strong ETag (``"<version>-<16 hex digits>"``) names; None for
    anything else: a weak tag, a list, another shape."""
    tag = _strong_form(raw.strip(), weak_ok=False)
    if tag is None:
        return None
    number, dash, digest = tag[1:-1].partition("-")
    if not dash or len(digest) != ETAG_DIGEST_HEX_DIGITS or not _is_hex(digest):
        return None
    return parse_version(number)


def _is_hex(text: str) -> bool:
    return text.isascii() and all(c in "0123456789abcdef" for c in text)


def if_match_tags(header: str | None) -> frozenset[str] | None:
    """The strong ETags an If-Match header names; None when any version will do (``*``).

    Weak and malformed tags match nothing (strong comparison), so a garbled header, or a
    bare version number from before ETags carried a digest, yields 412 rather than an
    unconditional write.
    """
    if header is None or header.strip() == ANY:
        return None
    tags = (_strong_form(tag, weak_ok=False) for tag in _tags(header))
    return frozenset(tag for tag in tags if tag is not None)


def if_none_match_hits(header: str | None, etag: str) -> bool:
    """True when If-None-Match names ``etag`` (weak comparison: ``W/`` is ignored) or is
    ``*``."""
    if header is None:
        return False
    # A tag that matches stands whole in the header, so a header holding neither the tag
    # nor ``*`` (an agent fetching after a change sends the one tag it holds) matches
    # nothing: answered without splitting it.
    if etag not in header and ANY not in header:
        return False
    return any(tag == ANY or _strong_form(tag, weak_ok=True) == etag for tag in _tags(header))
