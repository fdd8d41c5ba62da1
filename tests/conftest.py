from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import short_tmp_dir


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short-pathed scratch dir (ipc paths are limited to 107 bytes), removed afterwards."""
    path = short_tmp_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)
