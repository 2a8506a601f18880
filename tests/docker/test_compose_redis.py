"""The controller stack's Redis, checked without a Docker engine: the shipped ACL and its
secrets; publishing for agents elsewhere, over TLS when the env file says so (the wiring
of docker/redis/entrypoint.sh's REDIS_TLS_* and of the published port), and the
rediss:// URL form the env example documents for agents."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.asyncio.connection import SSLConnection, parse_url

from controller.hints import agent_hint_url
from controller.settings import ControllerSettings
from tests.docker.compose import (
    COMPOSE_FILES,
    COMPOSE_ONLY_VARIABLES,
    DOCKER_DIR,
    ENV_EXAMPLES,
    FILLED_IN_SECRETS,
    REDIS_ENTRYPOINT,
    ROOT,
    entrypoint_variables,
    environment_of,
    interpolate,
    load_compose,
    read_env_example,
)

TLS_MOUNT = "./secrets/redis-tls:/run/redis-tls:ro"
# Paths inside the redis container (a tmpfs there), not temporary files of the tests.
CONTAINER_TMPFS = "/tmp"  # noqa: S108
REDIS_DIR = DOCKER_DIR / "redis"
TLS_VARIABLES = ("REDIS_TLS_PORT", "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE", "REDIS_TLS_CA_FILE")


def _redis() -> dict[str, Any]:
    redis: dict[str, Any] = load_compose(COMPOSE_FILES["controller"])["services"]["redis"]
    return redis


def _services(stack: str) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = load_compose(COMPOSE_FILES[stack])["services"]
    return services


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


def _documented_secret_contents() -> dict[str, str]:
    """``name  content`` lines of the compose file's comment on its secrets."""
    text = COMPOSE_FILES["controller"].read_text(encoding="utf-8")
    pairs = re.findall(r"^#\s+(controller_redis_url)\s+(\S+)$", text, flags=re.MULTILINE)
    return dict(pairs)


def test_controller_stack_runs_redis_with_the_shipped_acl() -> None:
    """Redis runs docker/redis/entrypoint.sh (mounted read-only) with the two password
    files it reads, renders the ACL on a tmpfs, and its health check logs in as `agent`;
    every secret is a file under ./secrets/, which git and the image build ignore."""
    document = load_compose(COMPOSE_FILES["controller"])
    redis = document["services"]["redis"]
    mount = next(v for v in redis["volumes"] if v.startswith("./docker/redis:"))
    source, target, mode = mount.split(":")
    assert (ROOT / source / "entrypoint.sh").is_file()
    assert mode == "ro"
    assert redis["entrypoint"] == ["/bin/sh", f"{target}/entrypoint.sh"]
    assert "redis-server" not in redis["command"]  # the entrypoint runs it
    entrypoint = (REDIS_DIR / "entrypoint.sh").read_text(encoding="utf-8")
    password_files = re.findall(r"hash_of (\w+)\)", entrypoint)
    assert sorted(password_files) == ["redis_agent_password", "redis_controller_password"]
    assert sorted(redis["secrets"]) == sorted(password_files)
    assert 'secrets_dir="${REDIS_ACL_SECRETS_DIR:-/run/secrets}"' in entrypoint
    assert redis["tmpfs"] == [CONTAINER_TMPFS]
    assert f'acl_file="${{REDIS_ACL_FILE:-{CONTAINER_TMPFS}/users.acl}}"' in entrypoint
    assert "--user agent" in redis["healthcheck"]["test"][1]
    (published,) = redis["ports"]  # this host only unless the env file says otherwise
    assert interpolate(published, read_env_example(ENV_EXAMPLES["controller"])) == (
        "127.0.0.1:6379:6379"
    )
    for name, secret in document["secrets"].items():
        assert secret == {"file": f"./secrets/{name}"}
    assert {"secrets/"} <= set((ROOT / ".gitignore").read_text(encoding="utf-8").splitlines())
    assert {"secrets"} <= set((ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines())


def test_controller_redis_url_secret_uses_the_acl_identities(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The documented content of secrets/controller_redis_url logs in as the ACL's
    `controller` user at the compose service `redis`; it carries credentials, so agents
    are told only CONTROLLER_AGENT_REDIS_URL, whose documented user is the ACL's `agent`."""
    documented = _documented_secret_contents()["controller_redis_url"]
    assert documented == "redis://controller:<redis_controller_password>@redis:6379/0"
    template = (REDIS_DIR / "users.acl.template").read_text(encoding="utf-8")
    assert re.search(r"^user controller on .*\+publish", template, flags=re.MULTILINE)
    assert re.search(r"^user agent on .*\+subscribe", template, flags=re.MULTILINE)
    assert "+publish" not in next(line for line in template.splitlines() if "user agent" in line)
    filled = FILLED_IN_SECRETS["controller"]["controller_redis_url"]
    parts = urlsplit(filled)
    assert (parts.username, parts.hostname) == ("controller", "redis")
    assert parts.password == FILLED_IN_SECRETS["controller"]["redis_controller_password"]
    assert "redis" in _services("controller")
    example = ENV_EXAMPLES["controller"].read_text(encoding="utf-8")
    assert "#   CONTROLLER_AGENT_REDIS_URL=redis://agent:PASSWORD@<public host>:6379/0" in example
    (tmp_path / "url").write_text(filled + "\n", encoding="utf-8")
    for key in list(os.environ):
        if key.startswith("CONTROLLER_"):
            monkeypatch.delenv(key)
    settings = ControllerSettings(
        _env_file=None,
        admin_token="admin-token-for-the-compose-test",
        registration_token="registration-token-for-the-compose-test",
        redis_url_file=tmp_path / "url",
    )
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == filled
    assert agent_hint_url(settings) is None
