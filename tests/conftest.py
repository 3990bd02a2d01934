"""Shared fixtures: where the public captures and the bundled samples live."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_captures"
# The public captures sit beside the checkout (../shared), both for developers and for CI.
PUBLIC = (REPO / ".." / "shared" / "captures" / "public").resolve()


@pytest.fixture(scope="session")
def public_captures() -> Path:
    if not PUBLIC.is_dir():
        pytest.fail(f"public captures not found at {PUBLIC}: the checkout must sit beside shared/")
    return PUBLIC


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        pytest.fail("tshark is required (bash .ci/run installs it)")
    return path


def pytest_addoption(parser):
    parser.addoption("--update-goldens", action="store_true",
                     help="Rewrite tests/golden/*/expected/ from the batch path (review the diff like code).")


@pytest.fixture(scope="session")
def update_goldens(request) -> bool:
    return request.config.getoption("--update-goldens")
