"""docs/configuration.md against the settings classes: every variable, its default, secrets.

The names come from the classes the programs really build (prefix + field name for the
services, as tests/docker/ derives them for the compose files; the validation aliases
for the CLI), so a setting added, renamed or removed in the code fails here until the
page says the same.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

import pytest
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from cli.settings import DEFAULT_CONTROLLER_URL, URL_VARIABLE, CliSettings
from tests.docker.compose import ROOT, SETTINGS_CLASSES, setting_names

DOC: Final = ROOT / "docs" / "configuration.md"
PROGRAMS: Final[dict[str, type[BaseSettings]]] = {**SETTINGS_CLASSES, "cli": CliSettings}
# The CLI's URL field defaults to "" and resolve() then uses DEFAULT_CONTROLLER_URL.
EFFECTIVE_DEFAULTS: Final[dict[str, object]] = {URL_VARIABLE: DEFAULT_CONTROLLER_URL}
SETTINGS_HEADER: Final = ["variable", "default", "valid values", "meaning"]
_NAME = re.compile(r"(?:CONTROLLER|AGENT|WORKER|FLEETCONF)_[A-Z0-9_]+")
_ROW_NAME = re.compile(r"`([A-Z][A-Z0-9_]*)`")


def _variables(settings_class: type[BaseSettings]) -> dict[str, FieldInfo]:
    """Each environment variable the class reads, with its field."""
    prefix = settings_class.model_config.get("env_prefix", "")
    variables = {}
    for name, field in settings_class.model_fields.items():
        alias = field.validation_alias
        variables[alias if isinstance(alias, str) else f"{prefix}{name}".upper()] = field
    return variables


def _rows() -> dict[str, list[str]]:
    """The rows of the page's settings tables (those headed like SETTINGS_HEADER), by
    the variable in their first cell: name -> cells."""
    rows: dict[str, list[str]] = {}
    header: list[str] | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if header != SETTINGS_HEADER:
            continue
        match = _ROW_NAME.fullmatch(cells[0])
        if match is None or _NAME.fullmatch(match.group(1)) is None:
            continue
        assert match.group(1) not in rows, f"{match.group(1)} has two rows"
        rows[match.group(1)] = cells
    return rows


def _is_secret(field: FieldInfo) -> bool:
    return field.annotation is SecretStr or SecretStr in getattr(field.annotation, "__args__", ())


def _documented_default_matches(cell: str, default: Any) -> bool:
    text = cell.replace("`", "").strip()
    if isinstance(default, SecretStr):
        default = default.get_secret_value()
    if default is None:
        return text == "unset"
    if isinstance(default, bool):
        return text == str(default).lower()
    if isinstance(default, int | float):
        try:
            return float(text) == float(default)
        except ValueError:
            return False
    if isinstance(default, Path):
        return Path(text) == default
    return bool(text == str(default))


def _all_variables() -> list[tuple[str, str, FieldInfo]]:
    return [
        (program, name, field)
        for program, settings_class in PROGRAMS.items()
        for name, field in sorted(_variables(settings_class).items())
    ]


@pytest.mark.parametrize("program", sorted(SETTINGS_CLASSES))
def test_service_names_are_the_ones_the_compose_checks_use(program: str) -> None:
    """The names derived here are tests/docker's setting_names for each service."""
    settings_class = SETTINGS_CLASSES[program]
    assert set(_variables(settings_class)) == setting_names(settings_class)


def test_every_setting_has_one_row() -> None:
    """Every variable of the controller, agent, worker and CLI has a row on the page."""
    rows = _rows()
    missing = [name for _, name, _ in _all_variables() if name not in rows]
    assert not missing, f"docs/configuration.md has no table row for {missing}"


def test_the_page_names_no_unknown_variable() -> None:
    """Every CONTROLLER_/AGENT_/WORKER_/FLEETCONF_ name on the page is a real setting."""
    known = {name for _, name, _ in _all_variables()}
    quoted = re.findall(r"`([^`\n]+)`", DOC.read_text(encoding="utf-8"))
    named = {text for text in quoted if _NAME.fullmatch(text)}
    assert not named - known, f"docs/configuration.md names unknown settings {named - known}"


def test_defaults_match_the_code() -> None:
    """Each row's default column says the field's default, `required`, or `unset`."""
    rows = _rows()
    wrong: list[tuple[str, str, object]] = []
    for _, name, field in _all_variables():
        if field.default_factory is not None or name not in rows:
            # Computed at start (the host name, an empty label set); or a missing row,
            # which test_every_setting_has_one_row reports.
            continue
        default_cell = rows[name][1]
        if field.default is PydanticUndefined:
            if default_cell != "required":
                wrong.append((name, default_cell, "required"))
            continue
        default = EFFECTIVE_DEFAULTS.get(name, field.default)
        if not _documented_default_matches(default_cell, default):
            wrong.append((name, default_cell, default))
    assert not wrong, f"(variable, documented, code) defaults differ: {wrong}"


def test_secrets_are_marked_secret() -> None:
    """Each SecretStr setting is called a secret in its row and in the list of secrets."""
    rows = _rows()
    text = DOC.read_text(encoding="utf-8")
    secrets = [name for _, name, field in _all_variables() if _is_secret(field)]
    assert secrets, "no SecretStr field found: the check would prove nothing"
    unmarked = [name for name in secrets if "secret" not in rows.get(name, [""])[-1].lower()]
    assert not unmarked, f"rows that do not say secret: {unmarked}"
    secrets_table = text.split("Which settings are secret:", 1)[1].split("\n\n", 2)[1]
    unlisted = [name for name in secrets if f"`{name}`" not in secrets_table]
    assert not unlisted, f"missing from the list of secrets: {unlisted}"


def test_every_file_variant_is_listed_beside_its_secret() -> None:
    """Each *_FILE setting is a secret's file form and appears in the list of secrets."""
    text = DOC.read_text(encoding="utf-8")
    secrets_table = text.split("Which settings are secret:", 1)[1].split("\n\n", 2)[1]
    variables = {name: field for _, name, field in _all_variables()}
    for name in (name for name in variables if name.endswith("_FILE")):
        secret = name.removesuffix("_FILE")
        assert secret in variables, f"{name} has no {secret} beside it"
        assert _is_secret(variables[secret]), f"{secret} (with {name}) is not a SecretStr"
        assert f"`{name}`" in secrets_table, f"{name} is missing from the list of secrets"
