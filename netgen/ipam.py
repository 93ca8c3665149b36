"""Deterministic address pools, IPv4 and IPv6: same spec, same addresses, linear time."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network


def usable(subnet: IPv4Network | IPv6Network) -> tuple[int, int]:
    """First and last usable host address as integers (all of them for /31 and /32).

    IPv6 has no broadcast address; the network address is the subnet-router anycast
    address, never a host's (all of them for /127 and /128, as RFC 6164 allows).
    """
    first, last = int(subnet.network_address), int(subnet.broadcast_address)
    if subnet.version == 6:
        return (first, last) if subnet.prefixlen >= 127 else (first + 1, last)
    if subnet.prefixlen >= 31:
        return first, last
    return first + 1, last - 1


class Pool:
    """Hands out a subnet's addresses in order, skipping reserved ones.

    The cursor only moves forward, so allocating N addresses costs O(N + reserved)
    in total, never O(N^2), however full the subnet gets.
    """

    def __init__(self, subnet: IPv4Network | IPv6Network) -> None:
        self.subnet = subnet
        self._first, self._last = usable(subnet)
        self._cursor = self._first
        self._taken: set[int] = set()

    def why_unusable(self, address: IPv4Address | IPv6Address) -> str | None:
        """Why a static address cannot be used in this subnet, or None."""
        if address not in self.subnet:
            return f"{address} is outside subnet {self.subnet}"
        value = int(address)
        if self.subnet.version == 6:
            if value < self._first:
                return f"{address} is the subnet-router anycast address of {self.subnet}"
            return None
        if self.subnet.prefixlen < 31:
            if value == int(self.subnet.network_address):
                return f"{address} is the network address of {self.subnet}"
            if value == int(self.subnet.broadcast_address):
                return f"{address} is the broadcast address of {self.subnet}"
        return None

    def reserve(self, address: IPv4Address | IPv6Address) -> bool:
        """Mark an address as used; False if it was already taken."""
        value = int(address)
        if value in self._taken:
            return False
        self._taken.add(value)
        return True

    def allocate(self) -> IPv4Address | IPv6Address | None:
        """The next free address, or None when the subnet is full."""
        while self._cursor <= self._last and self._cursor in self._taken:
            self._cursor += 1
        if self._cursor > self._last:
            return None
        value = self._cursor
        self._taken.add(value)
        self._cursor += 1
        return IPv6Address(value) if self.subnet.version == 6 else IPv4Address(value)

    def capacity(self) -> int:
        return self._last - self._first + 1
