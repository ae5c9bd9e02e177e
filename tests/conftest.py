"""Shared fixtures: the real server on free ports with the demo configuration."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from web.app import Huishang
from web.config import HuishangConfig, default_config_path, load_config


@pytest.fixture
def demo_config(tmp_path: Path) -> HuishangConfig:
    """The demo config on free ports, with a fresh data directory."""
    config = load_config(default_config_path(), data_dir_override=tmp_path / "data")
    return dataclasses.replace(
        config,
        web=dataclasses.replace(config.web, port=0),
        signalling=dataclasses.replace(config.signalling, port=0),
    )


@pytest.fixture
async def server(demo_config: HuishangConfig) -> AsyncIterator[Huishang]:
    """The real server (web + signalling) on free loopback ports."""
    app = await Huishang.open(config=demo_config)
    try:
        yield app
    finally:
        await app.close()
