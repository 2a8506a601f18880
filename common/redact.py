"""URLs fit for a log line or a status page: credentials carried in a URL never show.

A URL may carry a secret in its user part (``https://user:password@host``) or in its
query (``?api_key=...``). :func:`redact_url` keeps what an operator needs to recognise
the URL (scheme, host, port, path, the query's names) and masks the rest.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"


def redact_url(url: str) -> str:
    """``url`` with its user part and every query value replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        names = [name for name, _ in parse_qsl(query, keep_blank_values=True)]
        query = urlencode([(name, MASK) for name in names], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))
