"""Which local addresses ICE gathers host candidates on (RFC 8445 5.1.1.1).

aioice leaves loopback out of its host candidates; tests and the demo need 127.0.0.1, and a
machine with other interfaces must not gather on them. ``aioice.ice.get_host_addresses``
decides; :func:`apply_ice_config` is the one place that replaces it, and only when the config
names addresses. The composition root calls it once at start.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass

import aioice.ice

__all__ = ["IceConfig", "apply_ice_config"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IceConfig:
    """ICE settings of the bridge.

    ``host_addresses``: gather host candidates on exactly these addresses (e.g.
    ``("127.0.0.1",)``); empty keeps aioice's own choice (every interface but loopback).
    """

    host_addresses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for address in self.host_addresses:
            try:
                ipaddress.ip_address(address)
            except ValueError as exc:
                raise ValueError(f"ICE host address {address!r} is not an IP address") from exc


def apply_ice_config(config: IceConfig) -> Callable[[], None]:
    """Make aioice gather only ``config.host_addresses``; returns a function that undoes it.

    With no addresses configured nothing is changed (and the undo does nothing).
    """
    if not config.host_addresses:
        return lambda: None
    original = aioice.ice.get_host_addresses
    addresses = config.host_addresses

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        out = []
        for address in addresses:
            version = ipaddress.ip_address(address).version
            if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
                out.append(address)
        return out

    aioice.ice.get_host_addresses = get_host_addresses
    logger.info("ICE gathers host candidates on %s only", ", ".join(addresses))

    def undo() -> None:
        if aioice.ice.get_host_addresses is get_host_addresses:
            aioice.ice.get_host_addresses = original

    return undo
