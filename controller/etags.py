"""Conditional request headers: If-Match and If-None-Match against version ETags."""

from __future__ import annotations

ANY = "*"


def _tags(header: str) -> list[str]:
    return [part.strip() for part in header.split(",") if part.strip()]


def _version_of(tag: str, *, weak_ok: bool) -> int | None:
    if tag.startswith("W/"):
        if not weak_ok:
            return None
        tag = tag[2:]
    if len(tag) < 3 or not (tag[0] == tag[-1] == '"'):
        return None
    digits = tag[1:-1]
    if not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        return None
    return int(digits)


def if_match_versions(header: str | None) -> frozenset[int] | None:
    """The versions an If-Match header accepts; None when any version will do.

    Tags that are not a strong version ETag match nothing, so a garbled header yields
    412 rather than an unconditional write.
    """
    if header is None or header.strip() == ANY:
        return None
    versions = (_version_of(tag, weak_ok=False) for tag in _tags(header))
    return frozenset(v for v in versions if v is not None)


def if_none_match_hits(header: str | None, version: int) -> bool:
    """True when If-None-Match names ``version`` (weak comparison) or is ``*``."""
    if header is None:
        return False
    return any(tag == ANY or _version_of(tag, weak_ok=True) == version for tag in _tags(header))
