"""One version as a replica serves it: its body and headers, computed once."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass

from common.constants import HEADER_CONFIG_VERSION, HEADER_POLL_INTERVAL_SECONDS
from controller.etags import etag_for


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """One version as served: its body already encoded, its headers already formatted."""

    version: int
    body: bytes
    created_at: dt.datetime
    poll_interval_seconds: int

    @functools.cached_property
    def etag(self) -> str:
        """Computed once per snapshot: the 304 path compares, never hashes."""
        return etag_for(self.version, self.body)

    @functools.cached_property
    def headers(self) -> Mapping[str, str]:
        """The headers of every GET /config answer for this snapshot, 200 and 304."""
        return {
            "ETag": self.etag,
            HEADER_CONFIG_VERSION: str(self.version),
            HEADER_POLL_INTERVAL_SECONDS: str(self.poll_interval_seconds),
            "Cache-Control": "no-cache",
        }
