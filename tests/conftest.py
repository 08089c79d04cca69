"""Shared test fixtures.

Tests that need the real datasets take the `data_dir` fixture. It reads the
folder from $RNN_TUTORIALS_DATA (CI sets it to ../shared/data). Unset, those
tests are skipped locally; under CI, or when set to a missing folder, they fail.
"""

import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import common  # noqa: E402,F401  (quiets TensorFlow's start-up logs)

DATA_ENV = "RNN_TUTORIALS_DATA"


@pytest.fixture(scope="session")
def data_dir():
    value = os.environ.get(DATA_ENV)
    if not value:
        if os.environ.get("CI"):
            pytest.fail(f"${DATA_ENV} is not set; CI must run the real-data tests.")
        pytest.skip(f"real data: set ${DATA_ENV} to the shared data folder")
    path = pathlib.Path(value)
    if not path.is_dir():
        pytest.fail(f"${DATA_ENV}={value} is not a folder")
    return path
