"""The forwarding-header rule of the proxy (cocaine_http.proxy.forwarded)."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from cocaine_http.proxy.forwarded import ForwardedPolicy, is_forwarding_header

H = list[tuple[bytes, bytes]]


def _values(headers: H, name: bytes) -> list[bytes]:
    return [value for key, value in headers if key.lower() == name.lower()]


SPOOF: H = [
    (b"Host", b"example.com"),
    (b"X-Forwarded-For", b"6.6.6.6"),
    (b"x-forwarded-proto", b"https"),
    (b"X-Real-IP", b"6.6.6.6"),
    (b"X_Forwarded_For", b"7.7.7.7"),
    (b"Forwarded", b"for=6.6.6.6;proto=https"),
    (b"X-Forwarded-Host", b"evil.example"),
    (b"Accept", b"*/*"),
]


def test_untrusted_peer_cannot_spoof_anything() -> None:
    """By default no peer is trusted: every client claim is replaced by the connection's."""
    out = ForwardedPolicy().rewrite(SPOOF, "203.0.113.9", "http")

    assert _values(out, b"X-Forwarded-For") == [b"203.0.113.9"]
    assert _values(out, b"X-Real-IP") == [b"203.0.113.9"]
    assert _values(out, b"X-Forwarded-Proto") == [b"http"]
    assert not [name for name, _ in out if name.lower() in (
        b"x_forwarded_for", b"forwarded", b"x-forwarded-host")]
    assert (b"Host", b"example.com") in out and (b"Accept", b"*/*") in out


def test_trusted_peer_chain_is_kept_and_peer_appended() -> None:
    policy = ForwardedPolicy(["10.0.0.0/8"])
    headers = [(b"Host", b"a"), (b"X-Forwarded-For", b"198.51.100.1, 10.1.1.1"),
               (b"X-Forwarded-Proto", b"https")]

    out = policy.rewrite(headers, "10.0.0.5", "http")

    assert _values(out, b"X-Forwarded-For") == [b"198.51.100.1, 10.1.1.1, 10.0.0.5"]
    assert _values(out, b"X-Forwarded-Proto") == [b"https"]
    # the nearest untrusted entry is the client (uvicorn's rule)
    assert _values(out, b"X-Real-IP") == [b"198.51.100.1"]


def test_trusted_peer_keeps_its_real_ip_and_other_forwarding_headers() -> None:
    policy = ForwardedPolicy(["127.0.0.1"])
    headers = [(b"X-Real-IP", b"198.51.100.7"), (b"X-Forwarded-Host", b"site.example"),
               (b"X_Forwarded_For", b"6.6.6.6")]

    out = policy.rewrite(headers, "127.0.0.1", "http")

    assert _values(out, b"X-Real-IP") == [b"198.51.100.7"]
    assert _values(out, b"X-Forwarded-Host") == [b"site.example"]
    assert _values(out, b"X-Forwarded-For") == [b"127.0.0.1"]
    assert not _values(out, b"X_Forwarded_For")


def test_trusted_peer_with_a_bogus_scheme_gets_the_connection_scheme() -> None:
    out = ForwardedPolicy(["*"]).rewrite([(b"X-Forwarded-Proto", b"javascript")], "1.2.3.4",
                                         "https")

    assert _values(out, b"X-Forwarded-Proto") == [b"https"]


def test_several_chain_headers_are_joined_in_order() -> None:
    headers = [(b"X-Forwarded-For", b"1.1.1.1"), (b"X-Forwarded-For", b"2.2.2.2")]

    out = ForwardedPolicy(["*"]).rewrite(headers, "3.3.3.3", "http")

    assert _values(out, b"X-Forwarded-For") == [b"1.1.1.1, 2.2.2.2, 3.3.3.3"]
    assert _values(out, b"X-Real-IP") == [b"1.1.1.1"]  # `*`: the first entry


def test_all_trusted_chain_names_its_first_entry() -> None:
    policy = ForwardedPolicy(["10.0.0.0/8"])

    out = policy.rewrite([(b"X-Forwarded-For", b"10.9.9.9, 10.8.8.8")], "10.0.0.1", "http")

    assert _values(out, b"X-Real-IP") == [b"10.9.9.9"]


def test_unix_peers() -> None:
    """`unix:` trusts every unix-socket peer; an untrusted one adds no address."""
    assert ForwardedPolicy(["unix:"]).trusts("unix:/run/nginx.sock")
    assert ForwardedPolicy(["unix:/run/a.sock"]).trusts("unix:/run/a.sock")
    assert not ForwardedPolicy(["unix:/run/a.sock"]).trusts("unix:/run/b.sock")

    out = ForwardedPolicy().rewrite(SPOOF, "unix:/run/x.sock", "http")

    assert not _values(out, b"X-Forwarded-For") and not _values(out, b"X-Real-IP")
    assert _values(out, b"X-Forwarded-Proto") == [b"http"]


def test_none_peer_is_never_trusted_unless_star() -> None:
    assert not ForwardedPolicy(["127.0.0.1", "unix:"]).trusts(None)
    assert ForwardedPolicy(["*"]).trusts(None)


def test_ipv6_and_mapped_ipv4() -> None:
    policy = ForwardedPolicy(["::1", "192.168.0.0/16", "2001:db8::/32"])

    assert policy.trusts("::1") and policy.trusts("0:0:0:0:0:0:0:1")
    assert policy.trusts("::ffff:192.168.3.4")  # an IPv4 client on a dual-stack socket
    assert policy.trusts("2001:db8::42")
    assert not policy.trusts("2001:db9::1") and not policy.trusts("10.0.0.1")


def test_parse_splits_the_option_value() -> None:
    policy = ForwardedPolicy.parse("127.0.0.1, 10.0.0.0/8 ,,unix:")

    assert policy.trusts("10.2.3.4") and policy.trusts("127.0.0.1")
    assert policy.trusts("unix:/x") and not policy.trusts("11.0.0.1")


addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
names = st.sampled_from([b"X-Forwarded-For", b"x-forwarded-for", b"X-Real-IP", b"x-real-ip",
                         b"X-Forwarded-Proto", b"Forwarded", b"X_Forwarded_For",
                         b"X-FORWARDED-HOST", b"Accept", b"Host", b"Cookie", b"X-Other"])
headers_st = st.lists(st.tuples(names, st.binary(min_size=0, max_size=20).filter(
    lambda v: b"," not in v)), max_size=10)


@given(headers=headers_st, peer=addresses, scheme=st.sampled_from(["http", "https"]))
def test_untrusted_rewrite_sets_exactly_the_connection(headers: H, peer: str,
                                                       scheme: str) -> None:
    """Whatever the client sends, an untrusted peer's request carries one of each header,
    naming the peer, and every non-forwarding header unchanged and in order."""
    out = ForwardedPolicy(["192.0.2.0/24"] if not peer.startswith("192.0.2.") else []
                          ).rewrite(headers, peer, scheme)

    assert _values(out, b"X-Forwarded-For") == [peer.encode()]
    assert _values(out, b"X-Real-IP") == [peer.encode()]
    assert _values(out, b"X-Forwarded-Proto") == [scheme.encode()]
    others = [(n, v) for n, v in headers if not is_forwarding_header(n)]
    assert [(n, v) for n, v in out if not is_forwarding_header(n)] == others


@given(chain=st.lists(addresses, min_size=0, max_size=5), peer=addresses)
def test_trusted_rewrite_appends_the_peer(chain: list[str], peer: str) -> None:
    headers = [(b"X-Forwarded-For", ", ".join(chain).encode())] if chain else []

    out = ForwardedPolicy(["*"]).rewrite(headers, peer, "http")

    got = _values(out, b"X-Forwarded-For")
    assert len(got) == 1
    assert got[0].decode().split(", ") == [*chain, peer]
    assert _values(out, b"X-Real-IP") == [(chain or [peer])[0].encode()]


@given(peer=addresses, network=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
       prefix=st.integers(0, 128))
def test_network_membership_agrees_with_ipaddress(peer: str, network: object,
                                                  prefix: int) -> None:
    net = ipaddress.ip_network(f"{network}/{min(prefix, 32 if ':' not in str(network) else 128)}",
                               strict=False)
    policy = ForwardedPolicy([str(net)])
    address = ipaddress.ip_address(peer)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # an IPv4 client on a dual-stack socket counts as IPv4

    assert policy.trusts(peer) == (address in net)
