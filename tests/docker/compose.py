"""Reading the compose files and their env examples as Docker Compose would.

Nothing here needs a Docker engine::

    package_directories()          the directories pyproject builds the wheel from
    load_compose(path)             the file after YAML load (anchors and merge keys resolved)
    variable_references(document)  the ${NAME...} a compose file reads ($$ is a literal $)
    interpolate(value, variables)  Compose's ${NAME}, ${NAME:-default}, ${NAME:?error} ...
    read_env_example(path)         NAME=value lines of an .env example
    setting_names(settings_class)  the variables a fleetconf settings class reads
    entrypoint_variables()         the variables docker/redis/entrypoint.sh reads
    service_kind(service)          which fleetconf service, or which backing image, it runs
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic_settings import BaseSettings

from agent.settings import AgentSettings
from controller.settings import ControllerSettings
from worker.settings import WorkerSettings

ROOT: Final = Path(__file__).resolve().parents[2]
DOCKER_DIR: Final = ROOT / "docker"
COMPOSE_FILES: Final = {
    "controller": ROOT / "docker-compose.controller.yml",
    "edge": ROOT / "docker-compose.edge.yml",
}
ENV_EXAMPLES: Final = {
    "controller": ROOT / ".env.controller.example",
    "edge": ROOT / ".env.edge.example",
}

SETTINGS_CLASSES: Final[dict[str, type[BaseSettings]]] = {
    "controller": ControllerSettings,
    "agent": AgentSettings,
    "worker": WorkerSettings,
}

# The variables the backing images document (their Docker Hub pages), and no others.
# postgres: the initdb variables, and the *_FILE forms of the four that support them.
POSTGRES_IMAGE_VARIABLES: Final = frozenset(
    {
        "POSTGRES_PASSWORD",
        "POSTGRES_USER",
        "POSTGRES_DB",
        "POSTGRES_INITDB_ARGS",
        "POSTGRES_INITDB_WALDIR",
        "POSTGRES_HOST_AUTH_METHOD",
        "PGDATA",
        "POSTGRES_PASSWORD_FILE",
        "POSTGRES_USER_FILE",
        "POSTGRES_DB_FILE",
        "POSTGRES_INITDB_ARGS_FILE",
    }
)
# redis 7.x documents none: it is configured by redis-server arguments.
REDIS_IMAGE_VARIABLES: Final = frozenset[str]()
# Our redis service runs docker/redis/entrypoint.sh, which reads the variables its header
# comment lists (``#   NAME   meaning``): those a redis service may be given.
REDIS_ENTRYPOINT: Final = DOCKER_DIR / "redis" / "entrypoint.sh"

# Variables a compose file interpolates for itself and gives to no service: the address
# and port the host publishes Redis on (the redis service's `ports:`). Each is listed,
# with its meaning, in the env example like every other; nothing else may be.
COMPOSE_ONLY_VARIABLES: Final = {
    "controller": frozenset({"REDIS_PUBLISHED_ADDRESS", "REDIS_PUBLISHED_PORT"}),
    "edge": frozenset[str](),
}

# What an operator writes into ./secrets/ before `docker compose up` (the files of each
# compose file's top-level `secrets:`), as the comments there say.
FILLED_IN_SECRETS: Final = {
    "controller": {
        "redis_controller_password": "0123456789abcdef0123456789abcdef",
        "redis_agent_password": "fedcba9876543210fedcba9876543210",
        "controller_redis_url": "redis://controller:0123456789abcdef0123456789abcdef@redis:6379/0",
    },
    "edge": {},
}
_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>[^}]*)\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    """A ${NAME:?message} (or ${NAME?message}) whose variable is missing."""


def package_directories() -> list[str]:
    """The top-level directories the wheel is built from: pyproject's packages, each from
    its ``package-dir`` (``fleetconf_migrations`` from ``alembic``) or its own name."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        setuptools = tomllib.load(file)["tool"]["setuptools"]
    mapped: dict[str, str] = setuptools.get("package-dir", {})
    return sorted(mapped.get(name, name) for name in setuptools["packages"])


def load_compose(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict), f"{path.name} is not a mapping"
    return document


def variable_references(document: Any) -> set[str]:
    """Every variable a loaded compose file interpolates (in its values), braced or bare."""
    if isinstance(document, str):
        matches = _REFERENCE.finditer(document)
        return {name for m in matches if (name := m.group("braced") or m.group("bare"))}
    if isinstance(document, Mapping):
        document = list(document.values())
    if isinstance(document, list):
        return set().union(*(variable_references(item) for item in document))
    return set()


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """``value`` with Compose's interpolation applied, as from an env file of ``variables``."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("bare")
        rest = match.group("rest") or ""
        present = name in variables
        value = variables.get(name, "")
        set_and_not_empty = present and value != ""
        for operator in (":-", ":?", "-", "?", ":+", "+"):
            if rest.startswith(operator):
                argument = rest[len(operator) :]
                break
        else:
            if rest:
                raise ValueError(f"unsupported interpolation ${{{name}{rest}}}")
            return value
        usable = set_and_not_empty if operator.startswith(":") else present
        if operator.endswith("-"):
            return value if usable else argument
        if operator.endswith("?"):
            if not usable:
                raise InterpolationError(f"{name}: {argument}")
            return value
        return argument if usable else ""

    return _REFERENCE.sub(replace, value)


def read_env_example(path: Path) -> dict[str, str]:
    """The ``NAME=value`` lines of an env file (comments and blank lines skipped)."""
    variables: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = stripped.partition("=")
        assert sep, f"{path.name}:{number}: not NAME=value: {line!r}"
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", name), f"{path.name}:{number}: {name!r}"
        assert name not in variables, f"{path.name}:{number}: {name} is set twice"
        variables[name] = value
    return variables


def setting_names(settings_class: type[BaseSettings]) -> frozenset[str]:
    """The environment variables ``settings_class`` reads: its prefix plus each field name.

    The secrets' ``*_FILE`` variants are fields of their own (``admin_token_file``), so
    they are among these names; a ``*_FILE`` that no field declares is not.
    """
    prefix = settings_class.model_config.get("env_prefix", "")
    return frozenset(f"{prefix}{name}".upper() for name in settings_class.model_fields)


def service_kind(service: Mapping[str, Any]) -> str:
    """``controller``, ``agent`` or ``worker`` for a fleetconf image, else the image's name."""
    build = service.get("build")
    if isinstance(build, Mapping):
        dockerfile = str(build.get("dockerfile", ""))
        match = re.fullmatch(r"docker/Dockerfile\.(\w+)", dockerfile)
        assert match, f"unexpected Dockerfile {dockerfile!r}"
        return match.group(1)
    image = str(service["image"])
    repository = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    return repository.removeprefix("fleetconf-")


def allowed_variables(kind: str) -> frozenset[str]:
    """The variables a service of ``kind`` may be given."""
    if kind in SETTINGS_CLASSES:
        return setting_names(SETTINGS_CLASSES[kind])
    if kind == "postgres":
        return POSTGRES_IMAGE_VARIABLES
    if kind == "redis":
        return REDIS_IMAGE_VARIABLES | entrypoint_variables()
    raise AssertionError(f"no variables are known for a service running {kind!r}")


def entrypoint_variables() -> frozenset[str]:
    """The variables docker/redis/entrypoint.sh documents in its header as those it reads."""
    header = REDIS_ENTRYPOINT.read_text(encoding="utf-8").split("\nset -eu", 1)[0]
    return frozenset(re.findall(r"^#\s{2,}(REDIS_[A-Z_]+)\s", header, flags=re.MULTILINE))


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment`` (mapping or list form) as written, before interpolation."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        pairs = (str(item).partition("=") for item in environment)
        return {name: value for name, _, value in pairs}
    return {str(name): "" if value is None else str(value) for name, value in environment.items()}
