"""ICE gathers host candidates on the configured addresses only (loopback in the demo)."""

from __future__ import annotations

import aioice.ice
import pytest

from bridge.ice import IceConfig, apply_ice_config


def test_gathering_is_limited_to_the_configured_addresses_and_undone() -> None:
    before = aioice.ice.get_host_addresses
    undo = apply_ice_config(IceConfig(host_addresses=("127.0.0.1", "::1")))
    try:
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
    finally:
        undo()
    assert aioice.ice.get_host_addresses is before


def test_no_addresses_changes_nothing() -> None:
    before = aioice.ice.get_host_addresses
    apply_ice_config(IceConfig())()
    assert aioice.ice.get_host_addresses is before


def test_bad_host_address_is_refused() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        IceConfig(host_addresses=("localhost",))
