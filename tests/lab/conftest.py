"""One lab per test session (fast timeouts), shared by every lab test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tlswatch.lab import LabConfig, running_lab
from tlswatch.lab.lab import Lab
from tlswatch.testing import FIXED_NOW

LAB_CONFIG = LabConfig(
    port=0,
    now=FIXED_NOW,
    hold_seconds=3.0,
    slow_interval=0.1,
    io_timeout=2.0,
)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    with running_lab(LAB_CONFIG) as running:
        yield running


@pytest.fixture(scope="session")
def desc(lab: Lab) -> dict[str, Any]:
    return lab.describe()
