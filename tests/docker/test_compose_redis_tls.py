"""Redis published for agents elsewhere, over TLS when the env file says so: the compose
wiring of docker/redis/entrypoint.sh's REDIS_TLS_* and of the published port, and the
rediss:// URL form the env example documents for agents."""

from __future__ import annotations

import re
from typing import Any

from redis.asyncio.connection import SSLConnection, parse_url

from tests.docker.compose import (
    COMPOSE_FILES,
    COMPOSE_ONLY_VARIABLES,
    ENV_EXAMPLES,
    REDIS_ENTRYPOINT,
    entrypoint_variables,
    environment_of,
    interpolate,
    load_compose,
    read_env_example,
)

TLS_MOUNT = "./secrets/redis-tls:/run/redis-tls:ro"
TLS_VARIABLES = ("REDIS_TLS_PORT", "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE", "REDIS_TLS_CA_FILE")


def _redis() -> dict[str, Any]:
    redis: dict[str, Any] = load_compose(COMPOSE_FILES["controller"])["services"]["redis"]
    return redis


def _published(**variables: str) -> str:
    """The redis service's one published port, with the example and ``variables`` filled in."""
    (ports,) = _redis()["ports"]
    return interpolate(ports, {**read_env_example(ENV_EXAMPLES["controller"]), **variables})


def test_entrypoint_header_lists_every_variable_it_reads() -> None:
    """Each REDIS_* the entrypoint reads is in its header, which the compose check trusts."""
    script = REDIS_ENTRYPOINT.read_text(encoding="utf-8")
    read = set(re.findall(r"\$\{(REDIS_[A-Z_]+)", script))
    assert read == entrypoint_variables()
    assert set(TLS_VARIABLES) <= read


def test_redis_gets_the_tls_settings_with_the_entrypoint_defaults() -> None:
    """Redis gets REDIS_TLS_* (off by default) with the entrypoint's defaults, in the mount."""
    redis = _redis()
    environment = environment_of(redis)
    assert sorted(environment) == sorted(TLS_VARIABLES)
    assert environment["REDIS_TLS_PORT"] == "${REDIS_TLS_PORT:-}"
    script = REDIS_ENTRYPOINT.read_text(encoding="utf-8")
    for name in TLS_VARIABLES[1:]:
        default = interpolate(environment[name], {})
        assert default.startswith("/run/redis-tls/")
        assert f"${{{name}:-{default}}}" in script
    assert TLS_MOUNT in redis["volumes"]
    example = read_env_example(ENV_EXAMPLES["controller"])
    assert example["REDIS_TLS_PORT"] == ""
    assert all(interpolate(environment[name], example) for name in TLS_VARIABLES[1:])


def test_published_port_is_this_host_only_by_default_and_the_tls_port_with_tls() -> None:
    """Redis is published on 127.0.0.1:6379 by default, and the TLS port when TLS is on."""
    assert _published() == "127.0.0.1:6379:6379"
    assert _published(REDIS_TLS_PORT="6380") == "127.0.0.1:6379:6380"
    chosen = {"REDIS_PUBLISHED_ADDRESS": "0.0.0.0", "REDIS_PUBLISHED_PORT": "16380"}
    assert _published(REDIS_TLS_PORT="6380", **chosen) == "0.0.0.0:16380:6380"
    assert {"REDIS_PUBLISHED_ADDRESS", "REDIS_PUBLISHED_PORT"} == COMPOSE_ONLY_VARIABLES[
        "controller"
    ]


def test_documented_agent_url_over_tls_is_a_tls_connection_with_the_ca() -> None:
    """The env example's rediss:// URL is, to redis-py, TLS checked against its CA file."""
    example = ENV_EXAMPLES["controller"].read_text(encoding="utf-8")
    (url,) = re.findall(r"^#\s+CONTROLLER_AGENT_REDIS_URL=(rediss://.+)$", example, re.MULTILINE)
    filled = url.replace("PASSWORD", "secret").replace("<public host>", "redis.example")
    options: dict[str, Any] = dict(parse_url(filled))
    assert options["connection_class"] is SSLConnection
    assert options["ssl_ca_certs"] == "/etc/fleetconf/redis-ca.crt"
    assert (options["username"], options["password"]) == ("agent", "secret")
