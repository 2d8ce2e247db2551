"""Trusted source networks: does a client address fall in one of them?

Pure: a list of networks (``smtp.trusted_networks``, CIDR text) in, a yes or no per
client address out. An IPv4-mapped IPv6 address (``::ffff:192.0.2.1``) counts as its
IPv4 address; text that is no address is never trusted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


class Networks:
    def __init__(self, networks: Iterable[str]) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str):
            return False
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self._networks)
