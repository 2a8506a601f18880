"""What the installed distribution says about itself."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION: str = "fleetconf"


def package_version() -> str:
    """fleetconf's version, or ``0.0.0`` when it runs from a tree that is not installed."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0.0.0"
