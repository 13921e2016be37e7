"""The shipped sources and the simulated shop's API on loopback, for the extract tests."""

from __future__ import annotations

import pytest

from tests.conftest import SHOP_END
from threshold_operators.extract.sources import SOURCES_DIR, load_sources
from threshold_operators.shop_api.server import ShopApiServer

NOW = SHOP_END  # the extract's clock: the shop's data ends now


@pytest.fixture
def sources():
    return {s.source: s for s in load_sources(SOURCES_DIR)[0]}


@pytest.fixture
def api(shop_file):
    with ShopApiServer(shop_file) as server:
        yield server


@pytest.fixture(autouse=True)
def _staging(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__STOREFENCE__STORAGE_URL", str(tmp_path))
