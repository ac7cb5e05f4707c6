# Strategy: one immutable policy object, built once from the --forwarded-allow-ips list, decides
# per request whether the connecting peer is a trusted proxy, and rewrites the request's
# forwarding headers accordingly. The trust rule follows uvicorn's --forwarded-allow-ips: an
# entry is `*` (trust every peer), an IP address, a CIDR network, or a literal compared as text
# (for peers that have no IP address, such as `unix:` sockets). The rewrite is one pass over the
# headers: every forwarding header the client sent is taken out, and the front's own values are
# appended, so an app sees exactly one of each, in a form it can trust.
"""Which client address and scheme an app behind the proxy may believe (X-Forwarded-*).

The rule (docs/proxy-parsing.md "Forwarded headers"):

* An untrusted peer (the default: no peer is trusted) cannot say anything about the client.
  Every `X-Forwarded-*`, `X-Real-IP` and `Forwarded` header it sent is removed. The front then
  sets `X-Forwarded-For` and `X-Real-IP` to the peer's address and
  `X-Forwarded-Proto` to the scheme of the connection.
* A trusted peer (named by the allow list) is a proxy in front of this one. Its
  `X-Forwarded-For` chain is kept (several such headers are joined in order) and the peer's
  address appended to it; its `X-Forwarded-Proto` is kept when it is `http`, `https`, `ws` or
  `wss`, else replaced by the connection's scheme; its `X-Real-IP` is kept when it sent exactly
  one, else set to the client address uvicorn's rule picks from the chain: the nearest entry
  that is not itself a trusted proxy, or the first one when all are. Its other forwarding
  headers (`X-Forwarded-Host`, `Forwarded`, ...) pass unchanged.
* Spellings with `_` for `-` (`X_Forwarded_For`, which CGI-style environments read as the same
  variable) are removed whoever sent them: no proxy sends them, so only a spoofer would.
* A peer without an address (None; a unix socket that is not trusted) removes the client's
  headers as above and adds only `X-Forwarded-Proto`: there is no address to put in the others.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

FORWARDED_FOR = b"X-Forwarded-For"
FORWARDED_PROTO = b"X-Forwarded-Proto"
REAL_IP = b"X-Real-IP"
#: The schemes a trusted proxy may claim for the original request.
SCHEMES = frozenset({b"http", b"https", b"ws", b"wss"})
UNIX_PREFIX = "unix:"


def _normal(name: bytes) -> bytes:
    """A header name as CGI-style environments see it: case and `_`/`-` do not matter."""
    return name.lower().replace(b"_", b"-")


def is_forwarding_header(name: bytes) -> bool:
    """True for a header that claims something about the client or an earlier proxy."""
    normal = _normal(name)
    return normal.startswith(b"x-forwarded-") or normal in (b"x-real-ip", b"forwarded")


def _address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # an IPv4 client on a dual-stack socket
    return address


class ForwardedPolicy:
    """The forwarding-header rule for one front (see the module docstring).

    Args:
        allow_ips: the peers trusted to report the client: IP addresses, CIDR networks
            (`10.0.0.0/8`), `*` for every peer, or literals matched as text, such as `unix:`
            (any unix-socket peer) or `unix:/run/nginx.sock`. Empty (the default): none.
    """

    def __init__(self, allow_ips: Sequence[str] = ()) -> None:
        entries = [entry.strip() for entry in allow_ips if entry.strip()]
        self.trust_all = "*" in entries
        self.hosts: set[IPAddress] = set()
        self.networks: list[IPNetwork] = []
        self.literals: set[str] = set()
        for entry in entries:
            if entry == "*":
                continue
            if "/" in entry and not entry.startswith(UNIX_PREFIX):
                try:
                    self.networks.append(ipaddress.ip_network(entry, strict=False))
                    continue
                except ValueError:
                    pass
            address = _address(entry)
            if address is not None:
                self.hosts.add(address)
            else:
                self.literals.add(entry)

    @classmethod
    def parse(cls, text: str) -> ForwardedPolicy:
        """The policy for a comma-separated option value (`127.0.0.1,10.0.0.0/8`)."""
        return cls(text.split(","))

    def trusts(self, peer: str | None) -> bool:
        """Whether `peer` (an IP address, `unix:...`, or None) is a trusted proxy."""
        if self.trust_all:
            return True
        if not peer:
            return False
        address = _address(peer)
        if address is None:
            return peer in self.literals or (
                peer.startswith(UNIX_PREFIX) and UNIX_PREFIX in self.literals)
        return address in self.hosts or any(address in net for net in self.networks)

    def client_of(self, chain: Sequence[str]) -> str:
        """The client address in a trusted X-Forwarded-For chain (uvicorn's rule): the
        nearest entry that is not a trusted proxy, else the first."""
        if not self.trust_all:
            for entry in reversed(chain):
                if not self.trusts(entry):
                    return entry
        return chain[0]

    def rewrite(self, headers: list[tuple[bytes, bytes]], peer: str | None,
                scheme: str) -> list[tuple[bytes, bytes]]:
        """The request headers with forwarding headers set from the connection.

        Args:
            headers: the request's headers as received (name, value), in order.
            peer: the connecting peer's IP address, `unix:<path>` or None.
            scheme: the scheme of the connection to this front (`http`, `https`).
        """
        if self.trusts(peer):
            return self._extend(headers, peer, scheme)
        kept = [(name, value) for name, value in headers if not is_forwarding_header(name)]
        kept.append((FORWARDED_PROTO, scheme.encode("latin-1")))
        if peer and _address(peer) is not None:
            address = peer.encode("latin-1")
            kept += [(FORWARDED_FOR, address), (REAL_IP, address)]
        return kept

    def _extend(self, headers: list[tuple[bytes, bytes]], peer: str | None,
                scheme: str) -> list[tuple[bytes, bytes]]:
        kept: list[tuple[bytes, bytes]] = []
        chain: list[str] = []
        protos: list[bytes] = []
        real_ips: list[bytes] = []
        for name, value in headers:
            normal = _normal(name)
            if normal == b"x-forwarded-for" and name.lower() == normal:
                chain += [part.strip() for part in value.decode("latin-1").split(",")
                          if part.strip()]
            elif normal == b"x-forwarded-proto" and name.lower() == normal:
                protos.append(value.strip().lower())
            elif normal == b"x-real-ip" and name.lower() == normal:
                real_ips.append(value.strip())
            elif normal != name.lower() and is_forwarding_header(name):
                continue  # an `_` spelling: never trusted, whoever sent it
            else:
                kept.append((name, value))
        if peer and _address(peer) is not None:
            chain.append(peer)
        proto = protos[0] if len(protos) == 1 and protos[0] in SCHEMES else scheme.encode()
        kept.append((FORWARDED_PROTO, proto))
        if chain:
            kept.append((FORWARDED_FOR, ", ".join(chain).encode("latin-1")))
        if len(real_ips) == 1 and real_ips[0]:
            kept.append((REAL_IP, real_ips[0]))
        elif chain:
            kept.append((REAL_IP, self.client_of(chain).encode("latin-1")))
        return kept
