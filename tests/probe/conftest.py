from __future__ import annotations

from pathlib import Path

import pytest

from .servers import Pki, make_big_chain, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def big_chain(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Path:
    return make_big_chain(tmp_path_factory.mktemp("big"), pki)
