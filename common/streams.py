"""Bodies read in pieces with a bound, so an oversize body is never buffered whole."""

from __future__ import annotations

from typing import Final

import aiohttp

READ_CHUNK_BYTES: Final = 64 * 1024


class BodyTooLarge(Exception):
    """The body grew past the bound; the caller says what that means at its boundary."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"the body is larger than {max_bytes} bytes")
        self.max_bytes = max_bytes


async def read_bounded(
    stream: aiohttp.StreamReader, max_bytes: int, *, chunk_bytes: int = READ_CHUNK_BYTES
) -> bytearray:
    """The whole body, however many pieces it arrives in; refused once it passes
    ``max_bytes``. Returned as gathered, not copied into ``bytes``: a body near the bound
    is never held twice."""
    body = bytearray()
    async for chunk in stream.iter_chunked(chunk_bytes):
        body += chunk
        if len(body) > max_bytes:
            raise BodyTooLarge(max_bytes)
    return body
