"""One version as a replica serves it: its body and headers, computed once."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass

from multidict import CIMultiDict, CIMultiDictProxy, istr

from common.constants import (
    HEADER_CONFIG_VERSION,
    HEADER_POLL_INTERVAL_SECONDS,
    HEADER_REPORT_INTERVAL_SECONDS,
)
from controller.etags import etag_for


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """One version as served: its body already encoded, its headers already formatted."""

    version: int
    body: bytes
    created_at: dt.datetime
    poll_interval_seconds: int
    # How often agents report their workers' /hit counts, when more often than polls.
    report_interval_seconds: int | None = None

    @functools.cached_property
    def etag(self) -> str:
        """Computed once per snapshot: the 304 path compares, never hashes."""
        return etag_for(self.version, self.body)

    @functools.cached_property
    def headers(self) -> Mapping[str, str]:
        """The headers of every GET /config answer for this snapshot, 200 and 304.

        Already in the form aiohttp keeps a response's headers in (a case-insensitive
        multidict keyed by ``istr``): each answer copies it as it is, where a plain dict
        would be converted name by name on every request.
        """
        pairs = [
            (istr("ETag"), self.etag),
            (istr(HEADER_CONFIG_VERSION), str(self.version)),
            (istr(HEADER_POLL_INTERVAL_SECONDS), str(self.poll_interval_seconds)),
            (istr("Cache-Control"), "no-cache"),
        ]
        if self.report_interval_seconds is not None:
            pairs.append((istr(HEADER_REPORT_INTERVAL_SECONDS), str(self.report_interval_seconds)))
        return CIMultiDictProxy(CIMultiDict(pairs))

    def watch_frame(self, *, with_config: bool) -> bytes:
        """This snapshot as a watch stream's frame (common.watch.ServedFrame), encoded
        once per snapshot however many agents watch: with the configuration, or without
        it (an interval changed, or the agent holds this ETag already)."""
        return self._watch_frames[0 if with_config else 1]

    @functools.cached_property
    def _watch_frames(self) -> tuple[bytes, bytes]:
        report = "null" if self.report_interval_seconds is None else self.report_interval_seconds
        head = (
            f'{{"version":{self.version},"etag":{json.dumps(self.etag)},'
            f'"poll_interval_seconds":{self.poll_interval_seconds},'
            f'"report_interval_seconds":{report},"config":'
        ).encode()
        return head + self.body + b"}", head + b"null}"
