"""hutch.net.addr against the standard library's ipaddress (its reference), on random
addresses and networks of both families."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, strategies as st

from hutch.net import addr

v4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
v6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))


@given(st.one_of(v4, v6))
def test_addresses_parse_and_print_as_the_stdlib(text):
    ours, theirs = addr.ip_address(text), ipaddress.ip_address(text)
    assert (str(ours), int(ours), ours.version) == (str(theirs), int(theirs), theirs.version)


@given(st.one_of(st.tuples(v4, st.integers(0, 32)), st.tuples(v6, st.integers(0, 128))),
       st.one_of(st.tuples(v4, st.integers(0, 32)), st.tuples(v6, st.integers(0, 128))))
def test_networks_behave_as_the_stdlib(a, b):
    text_a, text_b = f"{a[0]}/{a[1]}", f"{b[0]}/{b[1]}"
    ours, theirs = addr.ip_network(text_a, strict=False), ipaddress.ip_network(text_a, strict=False)
    other, other_theirs = addr.ip_network(text_b, strict=False), ipaddress.ip_network(text_b, strict=False)
    assert str(ours) == str(theirs) and ours.num_addresses == theirs.num_addresses
    assert str(ours.broadcast_address) == str(theirs.broadcast_address)
    assert (ours.is_loopback, ours.is_multicast, ours.is_link_local) == \
        (theirs.is_loopback, theirs.is_multicast, theirs.is_link_local)
    same_family = theirs.version == other_theirs.version
    assert ours.overlaps(other) == (same_family and theirs.overlaps(other_theirs))
    probe = addr.ip_address(b[0])
    assert (probe in ours) == (same_family and ipaddress.ip_address(b[0]) in theirs)
    strict_ok = str(theirs) == text_a or str(theirs.network_address) == a[0]
    if not strict_ok:
        with pytest.raises(ValueError, match="has host bits set"):
            addr.ip_network(text_a)


@pytest.mark.parametrize("bad", ["", "1.2.3", "1.2.3.4.5", "256.0.0.1", "::g", "1.2.3.4/33", "fd::/129",
                                 "1.2.3.4/x", "01.2.3.4x"])
def test_bad_input_is_a_value_error(bad):
    with pytest.raises(ValueError):
        addr.ip_network(bad)
