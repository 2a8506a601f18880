"""Who makes a change and why, read at the HTTP edge: the principal's name, and the
optional ``X-Change-Comment`` header, stored with the version and in the audit log."""

from __future__ import annotations

import unicodedata

from aiohttp import web

from common.constants import HEADER_CHANGE_COMMENT, MAX_CHANGE_COMMENT_CHARS
from common.errors import ValidationFailed
from common.openapi import Parameter, problem
from controller.audit import Change
from controller.credentials import Principal

# Control characters (C0, DEL, C1), line and paragraph separators, and undecodable bytes
# (aiohttp keeps bytes that are not UTF-8 as lone surrogates).
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
# Bidirectional controls reorder what a terminal or a web page shows around them.
_BIDI_CONTROLS = frozenset(
    ["\u061c", "\u200e", "\u200f"]
    + [chr(code) for code in range(0x202A, 0x202F)]
    + [chr(code) for code in range(0x2066, 0x206A)]
)

# The same rule as a JSON Schema pattern, for the OpenAPI document.
COMMENT_PATTERN = (
    "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u061c\\u200e\\u200f"
    "\\u202a-\\u202e\\u2066-\\u2069]*$"
)

COMMENT_PARAMETER = Parameter(
    name=HEADER_CHANGE_COMMENT,
    location="header",
    description=f"Why the change is made (UTF-8, at most {MAX_CHANGE_COMMENT_CHARS} "
    "characters, no control characters); kept in the history and the audit log.",
    schema={
        "type": "string",
        "maxLength": MAX_CHANGE_COMMENT_CHARS,
        "pattern": COMMENT_PATTERN,
    },
    example="roll back the broken upstream",
)

BAD_COMMENT = problem(
    422,
    f"The {HEADER_CHANGE_COMMENT} header is repeated, too long, or holds a control character.",
    f"The {HEADER_CHANGE_COMMENT} header is not valid: it is longer than "
    f"{MAX_CHANGE_COMMENT_CHARS} characters.",
)


def refused(char: str) -> bool:
    """Whether ``char`` may not appear in a comment."""
    return unicodedata.category(char) in _REFUSED_CATEGORIES or char in _BIDI_CONTROLS


def change_comment(request: web.Request) -> str | None:
    """The X-Change-Comment header; None when absent or empty, 422 when not acceptable."""
    values = request.headers.getall(HEADER_CHANGE_COMMENT, [])
    if not values:
        return None
    if len(values) > 1:
        raise _invalid("it is sent more than once", "repeated")
    # HTTP takes the spaces and tabs around a value off; str.strip() would take more
    # (U+0085, U+2028), hiding them from the check.
    comment = values[0].strip(" \t")
    if any(refused(char) for char in comment):
        raise _invalid(
            "it holds a control character or bytes that are not UTF-8", "control_character"
        )
    if len(comment) > MAX_CHANGE_COMMENT_CHARS:
        raise _invalid(f"it is longer than {MAX_CHANGE_COMMENT_CHARS} characters", "too_long")
    return comment or None


def _invalid(why: str, kind: str) -> ValidationFailed:
    return ValidationFailed(
        f"The {HEADER_CHANGE_COMMENT} header is not valid: {why}.",
        errors=[{"loc": ["header", HEADER_CHANGE_COMMENT], "msg": why, "type": kind}],
    )


def change_by(request: web.Request, principal: Principal) -> Change:
    """The change the request makes: by whom (the principal's name) and why."""
    actor = principal.name or principal.role.value
    return Change(actor=actor, comment=change_comment(request))
