"""Bearer credentials: reading them, comparing them in constant time, hashing them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from aiohttp import web

from common.errors import Unauthorized

_BEARER_PREFIX = "bearer "


def bearer_token(request: web.Request) -> str | None:
    """The request's Bearer token, or None when it sends none."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    if not header.lower().startswith(_BEARER_PREFIX):
        raise Unauthorized("Send the credential as 'Authorization: Bearer <token>'.")
    token = header[len(_BEARER_PREFIX) :].strip()
    if not token:
        raise Unauthorized("The Bearer token is empty.")
    return token


def require_bearer_token(request: web.Request) -> str:
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("This endpoint needs 'Authorization: Bearer <token>'.")
    return token


def tokens_equal(given: str, expected: str) -> bool:
    """Compare two secrets in time that does not depend on where they differ."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def hash_token(token: str) -> str:
    """SHA-256 of a high-entropy token; what the database keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_digest(token: str) -> bytes:
    """The raw SHA-256 of a token: ``hash_token`` as bytes, compared without hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


# The bytes of randomness in a secret (256 bits).
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh random secret, 256 bits, URL-safe."""
    return secrets.token_urlsafe(SECRET_BYTES)


def secret_of(random_bytes: bytes) -> str:
    """The secret ``new_secret`` would make of these SECRET_BYTES random bytes (drawn
    from ``secrets``/``os.urandom``), for callers that draw many at once."""
    if len(random_bytes) != SECRET_BYTES:
        raise ValueError(f"a secret takes {SECRET_BYTES} random bytes")
    return base64.urlsafe_b64encode(random_bytes).rstrip(b"=").decode("ascii")
