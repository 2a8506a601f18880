"""Names shared on the wire between the services: headers, media types, limits."""

from __future__ import annotations

from typing import Final

JSON_MEDIA_TYPE: Final = "application/json"
PROBLEM_MEDIA_TYPE: Final = "application/problem+json"

HEADER_CONFIG_VERSION: Final = "X-Config-Version"
HEADER_POLL_INTERVAL_SECONDS: Final = "X-Poll-Interval-Seconds"
HEADER_AGENT_ID: Final = "X-Agent-ID"
HEADER_APPLIED_VERSION: Final = "X-Applied-Version"

# Request bodies are small JSON documents; anything larger is refused with 413.
MAX_REQUEST_BODY_BYTES: Final = 64 * 1024
# Deeper JSON than this is refused with 422 before pydantic sees it.
MAX_JSON_DEPTH: Final = 32
MAX_URL_LENGTH: Final = 2048
