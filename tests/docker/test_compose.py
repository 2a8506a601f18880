"""The compose files, checked without a Docker engine: schema, settings names, env examples.

No Docker engine runs where this suite runs, so nothing here starts a container: the
files are checked against the Compose Specification schema and against the settings
classes the services really read.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic_settings import BaseSettings

from tests.docker.compose import (
    COMPOSE_FILES,
    COMPOSE_ONLY_VARIABLES,
    DOCKER_DIR,
    ENV_EXAMPLES,
    FILLED_IN_SECRETS,
    ROOT,
    SETTINGS_CLASSES,
    InterpolationError,
    allowed_variables,
    environment_of,
    interpolate,
    load_compose,
    read_env_example,
    service_kind,
    setting_names,
    variable_references,
)
from worker.main import open_config_refusal
from worker.settings import WorkerSettings

SCHEMA_PATH = DOCKER_DIR / "compose-spec.json"
# The schema's copy beside the checkout (absent from a plain clone).
SHARED_SCHEMA_PATH = ROOT.parent / "shared" / "schemas" / "compose-spec.json"

# What an operator fills in before `docker compose up`: the secrets the examples leave empty.
FILLED_IN = {
    "controller": {
        "POSTGRES_PASSWORD": "0123456789abcdef",
        "CONTROLLER_ADMIN_TOKEN": "admin-token-for-the-compose-test",
        "CONTROLLER_REGISTRATION_TOKEN": "registration-token-for-the-compose-test",
    },
    "edge": {
        "AGENT_CONTROLLER_URL": "http://controller.example.org:8000",
        "AGENT_REGISTRATION_TOKEN": "registration-token-for-the-compose-test",
        "AGENT_HOSTNAME": "edge-1",
        "WORKER_TOKEN": "worker-token-for-the-compose-test",
    },
}
SECRETS_IN_CONTAINER = "/run/secrets/"
STACKS = sorted(COMPOSE_FILES)


def _services(stack: str) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = load_compose(COMPOSE_FILES[stack])["services"]
    return services


def _project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as file:
        version: str = tomllib.load(file)["project"]["version"]
    return version


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    """The Compose Specification schema (JSON Schema draft 7, as its $schema says)."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


# SHA-256 of the schema as copied (docker/README.md names its source commit).
SCHEMA_SHA256 = "1f91e091f16b2dd50ab8860e02bb391d22df553d91c145eacedb1b6eff9c3f0e"


def test_schema_copy_is_the_shared_one() -> None:
    """docker/compose-spec.json is the schema as copied, and, where the shared schema sits
    beside the checkout, that one byte for byte."""
    copy = SCHEMA_PATH.read_bytes()
    assert hashlib.sha256(copy).hexdigest() == SCHEMA_SHA256
    if SHARED_SCHEMA_PATH.is_file():
        assert copy == SHARED_SCHEMA_PATH.read_bytes()


@pytest.mark.parametrize("stack", STACKS)
def test_compose_file_matches_the_compose_specification(
    stack: str, validator: jsonschema.Draft7Validator
) -> None:
    """Each compose file, after YAML load, is valid under the Compose Specification schema."""
    errors = sorted(validator.iter_errors(load_compose(COMPOSE_FILES[stack])), key=str)
    assert not errors, "\n".join(
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in errors
    )


def test_schema_check_catches_mistakes(validator: jsonschema.Draft7Validator) -> None:
    """The schema check is not vacuous: a misspelt key, a bad condition, a bad port fail."""
    document = load_compose(COMPOSE_FILES["controller"])
    assert validator.is_valid(document)
    misspelt = load_compose(COMPOSE_FILES["controller"])
    misspelt["services"]["controller"]["helthcheck"] = misspelt["services"]["controller"].pop(
        "healthcheck"
    )
    assert not validator.is_valid(misspelt)
    bad_condition = load_compose(COMPOSE_FILES["controller"])
    bad_condition["services"]["controller"]["depends_on"]["migrate"]["condition"] = "done"
    assert not validator.is_valid(bad_condition)
    bad_volume = load_compose(COMPOSE_FILES["edge"])
    bad_volume["volumes"]["agent-state"] = "not a volume definition"
    assert not validator.is_valid(bad_volume)


@pytest.mark.parametrize("stack", STACKS)
def test_every_variable_given_is_a_real_setting(stack: str) -> None:
    """Each variable a service is given is a setting of that service (or of its image)."""
    for name, service in _services(stack).items():
        kind = service_kind(service)
        unknown = set(environment_of(service)) - allowed_variables(kind)
        assert not unknown, f"{stack}/{name} ({kind}) is given unknown variables {unknown}"


def test_setting_names_come_from_the_settings_classes() -> None:
    """The valid names are derived from the classes, secret files included, nothing more."""
    controller = setting_names(SETTINGS_CLASSES["controller"])
    assert {"CONTROLLER_ADMIN_TOKEN", "CONTROLLER_ADMIN_TOKEN_FILE"} <= controller
    assert "CONTROLLER_DATABASE_URL" in controller
    assert "CONTROLLER_DATABASE_URL_FILE" in controller  # a URL may carry a password
    assert "CONTROLLER_PORT_FILE" not in controller
    agent = setting_names(SETTINGS_CLASSES["agent"])
    assert {"AGENT_WORKER_TOKEN_FILE", "AGENT_STATUS_HOST", "AGENT_STATUS_PORT"} <= agent
    assert "WORKER_TOKEN_FILE" in setting_names(SETTINGS_CLASSES["worker"])
    assert all(name.startswith("CONTROLLER_") for name in controller)
    assert all(name.startswith("AGENT_") for name in agent)


@pytest.mark.parametrize("stack", STACKS)
def test_env_example_lists_exactly_what_the_compose_file_reads(stack: str) -> None:
    """The .env example names every variable its compose file interpolates, and no other."""
    read = variable_references(load_compose(COMPOSE_FILES[stack]))
    listed = set(read_env_example(ENV_EXAMPLES[stack]))
    assert read - listed == set(), "read by the compose file, missing from the example"
    assert listed - read == set(), "in the example, never read by the compose file"


@pytest.mark.parametrize("stack", STACKS)
def test_env_example_variables_are_settings_of_the_service_given_them(stack: str) -> None:
    """Each .env variable is a setting of a service given it, or the compose file's own."""
    services = _services(stack)
    for variable in read_env_example(ENV_EXAMPLES[stack]):
        receivers = [
            name
            for name, service in services.items()
            if variable in variable_references(environment_of(service).get(variable, ""))
        ]
        if variable in COMPOSE_ONLY_VARIABLES[stack]:
            assert not receivers, f"{variable} is the compose file's own, given to {receivers}"
            in_ports = [
                s for s in services.values() if variable in variable_references(s.get("ports", []))
            ]
            assert in_ports, f"{variable} is allowed as the compose file's own, and unused"
            continue
        assert receivers, f"{variable} is not given to any service under its own name"
        for name in receivers:
            assert variable in allowed_variables(service_kind(services[name])), (stack, name)


@pytest.mark.parametrize("stack", STACKS)
def test_each_env_example_variable_is_documented(stack: str) -> None:
    """Every variable in an .env example has a comment above it (its block says what it is)."""
    lines = ENV_EXAMPLES[stack].read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if line and not line.startswith("#"):
            block_start = index
            while block_start > 0 and lines[block_start - 1][:1] not in ("", "#"):
                block_start -= 1
            assert block_start > 0, line
            assert lines[block_start - 1].startswith("#"), line


@pytest.mark.parametrize("stack", STACKS)
def test_compose_environment_is_accepted_by_the_settings(
    stack: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With the example and the secret files filled in, every fleetconf service's settings
    load from its environment."""
    variables = {**read_env_example(ENV_EXAMPLES[stack]), **FILLED_IN[stack]}
    checked = set()
    for name, service in _services(stack).items():
        kind = service_kind(service)
        if kind not in SETTINGS_CLASSES:
            continue
        environment = {
            key: _secret_path(interpolate(value, variables), service, stack, tmp_path)
            for key, value in environment_of(service).items()
        }
        settings = _load_settings(SETTINGS_CLASSES[kind], environment, monkeypatch)
        assert settings is not None, name
        checked.add(kind)
    assert checked


def _secret_path(value: str, service: dict[str, Any], stack: str, tmp_path: Path) -> str:
    """A /run/secrets/NAME path as a file written here with the secret's filled-in content;
    the service must be given that secret. Other values unchanged."""
    if not value.startswith(SECRETS_IN_CONTAINER):
        return value
    name = value.removeprefix(SECRETS_IN_CONTAINER)
    assert name in service.get("secrets", []), f"{name} is read but not given"
    path = tmp_path / name
    path.write_text(FILLED_IN_SECRETS[stack][name] + "\n", encoding="utf-8")
    return str(path)


def _load_settings(
    settings_class: type[BaseSettings],
    environment: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> BaseSettings:
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    for key in list(os.environ):
        if key.startswith(prefix):
            monkeypatch.delenv(key)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    return settings_class(_env_file=None)


def test_controller_stack_wiring() -> None:
    """Migrations run once before the controller serves; hints on, the controller's Redis
    URL from a secret file (set once, not beside CONTROLLER_REDIS_URL); secrets not baked in."""
    services = _services("controller")
    migrate, controller = services["migrate"], services["controller"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert controller["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert controller["depends_on"]["redis"]["condition"] == "service_healthy"
    for service in (migrate, controller):
        environment = environment_of(service)
        assert environment["CONTROLLER_MIGRATE_ON_START"] == "false"
        assert environment["CONTROLLER_DATABASE_URL"].startswith("postgresql://")
        # A direct CONTROLLER_REDIS_URL would win over the file: it is never set.
        assert "CONTROLLER_REDIS_URL" not in environment
        for secret in ("CONTROLLER_ADMIN_TOKEN", "CONTROLLER_REGISTRATION_TOKEN"):
            assert environment[secret] == f"${{{secret}:-}}"
            assert environment[f"{secret}_FILE"] == f"${{{secret}_FILE:-}}"
    assert "CONTROLLER_REDIS_URL_FILE" not in environment_of(migrate)
    assert "secrets" not in migrate
    url_file = environment_of(controller)["CONTROLLER_REDIS_URL_FILE"]
    assert url_file == f"{SECRETS_IN_CONTAINER}controller_redis_url"
    assert controller["secrets"] == ["controller_redis_url"]
    assert controller["ports"] == ["8000:8000"]
    assert services["postgres"]["volumes"] == ["postgres-data:/var/lib/postgresql/data"]


def test_controller_stack_needs_a_database_password() -> None:
    """Without POSTGRES_PASSWORD, Compose refuses the file instead of starting without one."""
    variables = {**read_env_example(ENV_EXAMPLES["controller"])}
    url = environment_of(_services("controller")["controller"])["CONTROLLER_DATABASE_URL"]
    with pytest.raises(InterpolationError, match="POSTGRES_PASSWORD"):
        interpolate(url, variables)
    filled = interpolate(url, {**variables, **FILLED_IN["controller"]})
    assert filled == "postgresql://fleetconf:0123456789abcdef@postgres:5432/fleetconf"


def test_edge_stack_wiring() -> None:
    """Agent beside its worker on one network, state on a named volume, one shared token."""
    document = load_compose(COMPOSE_FILES["edge"])
    agent, worker = document["services"]["agent"], document["services"]["worker"]
    assert agent["networks"] == worker["networks"] == ["edge"]
    assert agent["volumes"] == ["agent-state:/var/lib/fleetconf/agent"]
    assert "agent-state" in document["volumes"]
    agent_env, worker_env = environment_of(agent), environment_of(worker)
    assert agent_env["AGENT_STATE_DIR"] == "/var/lib/fleetconf/agent"
    assert agent_env["AGENT_WORKER_URL"] == "http://worker:8080"
    assert agent_env["AGENT_WORKER_TOKEN"] == worker_env["WORKER_TOKEN"] == "${WORKER_TOKEN:-}"
    assert agent_env["AGENT_WORKER_TOKEN_FILE"] == worker_env["WORKER_TOKEN_FILE"]


def test_edge_worker_needs_a_token_to_start() -> None:
    """The edge worker listens beyond loopback, so it starts only once WORKER_TOKEN is set."""
    variables = read_env_example(ENV_EXAMPLES["edge"])
    assert variables["WORKER_TOKEN"] == variables["WORKER_TOKEN_FILE"] == ""
    worker = environment_of(_services("edge")["worker"])
    assert "WORKER_HOST" not in worker

    def settings(values: dict[str, str]) -> WorkerSettings:
        filled = {name: interpolate(value, values) for name, value in worker.items()}
        given = {k.removeprefix("WORKER_").lower(): v for k, v in filled.items() if v}
        return WorkerSettings.model_validate(given)

    assert open_config_refusal(settings(variables)) is not None
    assert open_config_refusal(settings({**variables, **FILLED_IN["edge"]})) is None


def test_edge_stack_requires_the_controller_url() -> None:
    """AGENT_CONTROLLER_URL has no default: Compose stops with a message when it is unset."""
    variables = read_env_example(ENV_EXAMPLES["edge"])
    assert variables["AGENT_CONTROLLER_URL"] == ""
    value = environment_of(_services("edge")["agent"])["AGENT_CONTROLLER_URL"]
    assert value.startswith("${AGENT_CONTROLLER_URL:?")
    with pytest.raises(InterpolationError, match="AGENT_CONTROLLER_URL"):
        interpolate(value, variables)


@pytest.mark.parametrize("stack", STACKS)
def test_long_running_services_have_health_checks(stack: str) -> None:
    """Every service that keeps running has a health check; fleetconf's use the image's script."""
    for name, service in _services(stack).items():
        if service.get("restart") == "no":
            continue
        test = service["healthcheck"]["test"]
        kind = service_kind(service)
        if kind in SETTINGS_CLASSES:
            assert test == ["CMD", "python", "/opt/fleetconf/healthcheck.py", kind], name


@pytest.mark.parametrize("stack", STACKS)
def test_fleetconf_images_carry_the_project_version(stack: str) -> None:
    """The images the compose files build are tagged with the package's version."""
    for name, service in _services(stack).items():
        if service_kind(service) in SETTINGS_CLASSES:
            assert service["image"] == f"fleetconf-{service_kind(service)}:{_project_version()}"
            assert service["build"]["context"] == "."
            assert (ROOT / service["build"]["dockerfile"]).is_file(), name


def test_env_files_with_secrets_stay_out_of_git_and_images() -> None:
    """A filled-in .env is ignored by git and by the Docker build context; examples are not."""
    gitignore = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    dockerignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert {".env", ".env.*", "!.env.*.example"} <= set(gitignore)
    assert {".env", ".env.*"} <= set(dockerignore)
