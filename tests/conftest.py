"""Shared fixtures: where the real data lives, and small helpers used across test files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EMBEDSEG_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (or $EMBEDSEG_SHARED_DATA); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set EMBEDSEG_SHARED_DATA)")
    return SHARED_DATA
