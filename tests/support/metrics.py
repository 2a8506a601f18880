"""Scraping a service's ``GET /metrics`` and reading the samples, as Prometheus would.

``scrape(client)`` takes a pytest-aiohttp client, ``scrape_url(session, base_url)`` a
service on loopback; both parse with ``prometheus_client``'s own parser.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

# name, sorted (label, value) pairs -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
METRICS_CONTENT_TYPE_PREFIX = "text/plain; version=0.0.4"


def parse(text: str) -> Samples:
    """Every sample in a text exposition, keyed by name and sorted labels."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; KeyError (naming the sample) when it is absent."""
    key = (name, tuple(sorted(labels.items())))
    if key not in samples:
        raise KeyError(f"no sample {name}{labels or ''} in the scrape")
    return samples[key]


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    """Every sample of ``name`` labelled with ``label`` alone, by that label's value."""
    return {
        labels[0][1]: sample
        for (sample_name, labels), sample in samples.items()
        if sample_name == name and [key for key, _ in labels] == [label]
    }


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


async def scrape(client: Any) -> Samples:
    """GET /metrics through a pytest-aiohttp test client."""
    resp = await client.get("/metrics")
    text = await resp.text()
    assert resp.status == 200, text
    assert resp.headers["Content-Type"].startswith(METRICS_CONTENT_TYPE_PREFIX)
    return parse(text)


async def scrape_url(session: aiohttp.ClientSession, base_url: str) -> Samples:
    """GET <base_url>/metrics of a service on loopback."""
    async with session.get(f"{base_url}/metrics") as resp:
        text = await resp.text()
        assert resp.status == 200, text
        assert resp.headers["Content-Type"].startswith(METRICS_CONTENT_TYPE_PREFIX)
        return parse(text)
