"""Shared fixtures: where the public captures and the bundled samples live, and one analysis per input."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from voipwatch.analyze import AnalysisResult, analyze_files
from voipwatch.config import load_settings

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_captures"
# The public captures sit beside the checkout (../shared), both for developers and for CI.
PUBLIC = (REPO / ".." / "shared" / "captures" / "public").resolve()


@pytest.fixture(scope="session")
def public_captures() -> Path:
    if not PUBLIC.is_dir():
        pytest.fail(f"public captures not found at {PUBLIC}: the checkout must sit beside shared/")
    return PUBLIC


def _peer_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required (Debian package {package}; bash .ci/run installs it)")
    return path


@pytest.fixture(scope="session")
def tshark() -> str:
    return _peer_tool("tshark", "tshark")


@pytest.fixture(scope="session")
def editcap() -> str:
    return _peer_tool("editcap", "wireshark-common")


# Tiers left out of a core run (markers registered in pyproject.toml).
NOT_CORE = ("lab", "live", "browser", "peer", "cli", "slow")


def pytest_addoption(parser):
    parser.addoption("--update-goldens", action="store_true",
                     help="Rewrite tests/golden/*/expected/ from the batch path (review the diff like code).")
    parser.addoption("--core", action="store_true",
                     help=f"Run the core tier only: deselect the tests marked {', '.join(NOT_CORE)}.")


def pytest_collection_modifyitems(config, items):
    unmarked = [item.nodeid for item in items
                if "tshark" in item.fixturenames and item.get_closest_marker("peer") is None]
    if unmarked:
        raise pytest.UsageError("tests that run tshark must be marked peer: " + ", ".join(unmarked))
    if config.getoption("--core"):
        core, other = [], []
        for item in items:
            (other if any(item.get_closest_marker(name) for name in NOT_CORE) else core).append(item)
        config.hook.pytest_deselected(items=other)
        items[:] = core


@pytest.fixture(scope="session")
def update_goldens(request) -> bool:
    return request.config.getoption("--update-goldens")


def _identity(path: str | Path) -> tuple[str, str]:
    """A file named by its path and its content, so that an edited capture or config is analysed anew."""
    path = Path(path).resolve()
    return str(path), hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def analysis():
    """analysis(capture, config=None, mode="batch"): voipwatch's analysis of one capture, computed once per
    run for each (capture and its hash, config file and its hash, mode) and shared by every test file.

    The results are read, never changed: a test that needs other settings or --jobs calls analyze_files.
    """
    cache: dict[tuple, AnalysisResult] = {}

    def analyse(capture: str | Path, config: str | Path | None = None, mode: str = "batch") -> AnalysisResult:
        key = (_identity(capture), None if config is None else _identity(config), mode)
        if key not in cache:
            settings = load_settings(None if config is None else str(config))
            cache[key] = analyze_files([str(capture)], settings, mode=mode)
        return cache[key]
    return analyse
