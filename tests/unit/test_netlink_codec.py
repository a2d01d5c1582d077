"""hutch.net.netlink without the kernel: packing and parsing round trips, alignment,
error replies, and the request loop against a scripted socket (dumps in several
datagrams, stale replies, interrupted dumps)."""

from __future__ import annotations

import errno
import struct
import subprocess
import sys

import _socket
import pytest

from hutch.errors import ConfigError, HutchError, SysCallError
from hutch.net import netlink as nl


# --- attributes ----------------------------------------------------------------------

@pytest.mark.parametrize("payload, size", [(b"", 4), (b"a", 8), (b"ab", 8), (b"abc", 8), (b"abcd", 8),
                                           (b"abcde", 12)])
def test_an_attribute_is_padded_to_four_bytes_but_its_length_is_not(payload, size):
    raw = nl.attr(7, payload)
    assert len(raw) == size
    length, kind = struct.unpack_from("=HH", raw)
    assert (length, kind) == (4 + len(payload), 7)
    assert raw[4 + len(payload):] == b"\0" * (size - 4 - len(payload))


def test_attributes_of_odd_sizes_parse_back_in_sequence():
    raw = nl.attr_str(nl.IFLA_IFNAME, "eth0") + nl.attr(9, b"xyz") + nl.attr_u32(nl.IFLA_MTU, 1400)
    attrs = nl.parse_attrs(raw)
    assert attrs == {nl.IFLA_IFNAME: b"eth0\0", 9: b"xyz", nl.IFLA_MTU: struct.pack("=I", 1400)}


def test_nested_flag_is_set_on_the_wire_and_masked_when_parsing():
    raw = nl.attr_nested(nl.IFLA_LINKINFO, nl.attr_str(nl.IFLA_INFO_KIND, "bridge"))
    assert struct.unpack_from("=HH", raw)[1] == nl.IFLA_LINKINFO | nl.NLA_F_NESTED
    inner = nl.parse_attrs(raw)[nl.IFLA_LINKINFO]
    assert nl.parse_attrs(inner) == {nl.IFLA_INFO_KIND: b"bridge\0"}


def test_an_attribute_overrunning_its_buffer_is_refused():
    raw = nl.attr(1, b"abcdefgh")
    with pytest.raises(ValueError, match="overruns"):
        nl.parse_attrs(raw[:-2])
    with pytest.raises(ValueError):
        nl.parse_attrs(struct.pack("=HH", 2, 1))      # shorter than its own header


def test_the_veth_request_carries_the_peer_as_ifinfomsg_plus_attributes_three_levels_down():
    body = nl.veth_request("hv0", "eth0", peer_netns=42, mtu=1400, master=7)
    assert nl.IFINFOMSG.unpack_from(body) == (0, 0, 0, 0, 0)
    top = nl.parse_attrs(body, nl.IFINFOMSG.size)
    assert top[nl.IFLA_IFNAME] == b"hv0\0"
    assert struct.unpack("=I", top[nl.IFLA_MTU]) == (1400,)
    assert struct.unpack("=I", top[nl.IFLA_MASTER]) == (7,)
    info = nl.parse_attrs(top[nl.IFLA_LINKINFO])
    assert info[nl.IFLA_INFO_KIND] == b"veth\0"
    peer = nl.parse_attrs(info[nl.IFLA_INFO_DATA])[nl.VETH_INFO_PEER]
    assert nl.IFINFOMSG.unpack_from(peer) == (0, 0, 0, 0, 0)
    peer_attrs = nl.parse_attrs(peer, nl.IFINFOMSG.size)
    assert peer_attrs[nl.IFLA_IFNAME] == b"eth0\0"
    assert struct.unpack("=I", peer_attrs[nl.IFLA_NET_NS_FD]) == (42,)
    assert nl.IFLA_MASTER not in peer_attrs          # the master is the host side's only


# --- messages ----------------------------------------------------------------------------

def test_messages_round_trip_several_to_a_datagram_with_alignment():
    one = nl.message(nl.RTM_NEWLINK, nl.NLM_F_MULTI, 5, nl.ifinfo(3) + nl.attr(1, b"abc"), pid=9)
    two = nl.message(nl.NLMSG_DONE, nl.NLM_F_MULTI, 5, struct.pack("=i", 0))
    parsed = list(nl.parse_messages(one + two))
    assert [(k, f, s, p) for k, f, s, p, _ in parsed] == [(nl.RTM_NEWLINK, nl.NLM_F_MULTI, 5, 9),
                                                       (nl.NLMSG_DONE, nl.NLM_F_MULTI, 5, 0)]
    assert nl.IFINFOMSG.unpack_from(parsed[0][4])[2] == 3
    with pytest.raises(ValueError):
        list(nl.parse_messages(one[:-1]))


def _error_payload(err: int, request: bytes, msg: str | None = None, capped: bool = True) -> tuple[bytes, int]:
    """An NLMSG_ERROR payload as the kernel builds it, and its header flags."""
    copied = request[:nl.NLMSGHDR.size] if capped else request
    payload = struct.pack("=i", -err) + copied
    flags = nl.NLM_F_CAPPED if capped else 0
    if msg is not None:
        payload += nl.attr(nl.NLMSGERR_ATTR_MSG, msg.encode() + b"\0")
        flags |= nl.NLM_F_ACK_TLVS
    return payload, flags


@pytest.mark.parametrize("capped", [True, False])
def test_an_error_reply_gives_errno_and_the_kernel_explanation(capped):
    request = nl.message(nl.RTM_NEWLINK, 5, 1, nl.ifinfo() + nl.attr_str(nl.IFLA_IFNAME, "abcde"))
    payload, flags = _error_payload(errno.EEXIST, request, "Link already exists", capped)
    assert nl.parse_error(payload, flags) == (errno.EEXIST, "Link already exists")
    assert nl.parse_error(struct.pack("=i", 0) + request[:16], nl.NLM_F_CAPPED) == (0, None)


def test_a_done_carrying_an_error_is_parsed_as_one():
    payload = struct.pack("=i", -errno.EINVAL) + nl.attr(nl.NLMSGERR_ATTR_MSG, b"bad filter\0")
    assert nl.parse_error(payload, nl.NLM_F_ACK_TLVS, done=True) == (errno.EINVAL, "bad filter")
    assert nl.parse_error(struct.pack("=i", 0), 0, done=True) == (0, None)


def test_the_error_is_one_line_naming_operation_and_object():
    exc = nl.NetlinkError("cannot add link hutch0", errno.EEXIST)
    assert isinstance(exc, SysCallError) and isinstance(exc, HutchError)
    assert exc.errno == errno.EEXIST and exc.where == "netlink"
    assert exc.message == "cannot add link hutch0: File exists"
    assert str(exc) == "netlink: cannot add link hutch0: File exists"
    told = nl.NetlinkError("cannot add route default via 10.9.0.1", errno.ENETUNREACH, "Nexthop has invalid gateway")
    assert told.message == "cannot add route default via 10.9.0.1: Network is unreachable (Nexthop has invalid gateway)"
    assert "\n" not in str(told)


# --- parsing replies ---------------------------------------------------------------------------

def test_a_link_reply_parses_to_the_documented_dict():
    body = (nl.ifinfo(4, flags=nl.IFF_UP | 0x1000) + nl.attr_str(nl.IFLA_IFNAME, "hv0")
            + nl.attr_u32(nl.IFLA_MTU, 1300) + nl.attr_u32(nl.IFLA_MASTER, 2)
            + nl.attr(nl.IFLA_ADDRESS, bytes([0x1a, 0x7b, 0x13, 0x71, 0x20, 0x1c]))
            + nl.attr(nl.IFLA_OPERSTATE, b"\x06") + nl.attr(nl.IFLA_IFALIAS, b"hello")
            + nl.linkinfo("veth") + nl.attr_u32(nl.IFLA_LINK, 3))
    link = nl.parse_link(body)
    assert {k: link[k] for k in ("index", "name", "kind", "mtu", "master", "up", "address", "alias",
                                 "operstate", "link")} == {
        "index": 4, "name": "hv0", "kind": "veth", "mtu": 1300, "master": 2, "up": True,
        "address": "1a:7b:13:71:20:1c", "alias": "hello", "operstate": "UP", "link": 3}
    bare = nl.parse_link(nl.ifinfo(1) + nl.attr_str(nl.IFLA_IFNAME, "lo"))
    assert (bare["kind"], bare["master"], bare["up"], bare["alias"], bare["operstate"]) == (
        None, None, False, None, "UNKNOWN")


def test_address_requests_and_replies_round_trip_for_both_families():
    v4 = nl.address_request(5, "10.201.2.3/24")
    family, prefixlen, flags, _scope, index = nl.IFADDRMSG.unpack_from(v4)
    assert (family, prefixlen, flags, index) == (_socket.AF_INET, 24, 0, 5)
    assert nl.parse_address(v4) | {"flags": None} == {
        "index": 5, "family": 4, "address": "10.201.2.3", "prefixlen": 24, "flags": None, "scope": 0,
        "label": None}
    v6 = nl.address_request(5, "fd42::5/64")
    assert nl.IFADDRMSG.unpack_from(v6)[2] == nl.IFA_F_NODAD
    assert nl.parse_address(v6)["address"] == "fd42::5" and nl.parse_address(v6)["family"] == 6
    assert nl.parse_address(v6)["flags"] & nl.IFA_F_NODAD
    assert nl.IFADDRMSG.unpack_from(nl.address_request(5, "fd42::5/64", nodad=False))[2] == 0


def test_route_requests_follow_iproute2s_defaults():
    default = nl.route_request(gateway="10.201.0.1")
    fields = nl.RTMSG.unpack_from(default)
    assert fields[:2] == (_socket.AF_INET, 0)                    # no RTA_DST, dst_len 0
    assert (fields[4], fields[5], fields[6], fields[7]) == (nl.RT_TABLE_MAIN, nl.RTPROT_BOOT,
                                                            nl.RT_SCOPE_UNIVERSE, nl.RTN_UNICAST)
    route = nl.parse_route(default)
    assert (route["dst"], route["gateway"], route["oif"], route["metric"]) == ("default", "10.201.0.1", None, None)
    onlink = nl.route_request("10.202.0.0/16", oif=3, metric=7)
    assert nl.RTMSG.unpack_from(onlink)[6] == nl.RT_SCOPE_LINK
    route = nl.parse_route(onlink)
    assert (route["dst"], route["gateway"], route["oif"], route["metric"]) == ("10.202.0.0/16", None, 3, 7)
    v6 = nl.parse_route(nl.route_request(gateway="fd42::1", family=6))
    assert (v6["family"], v6["gateway"]) == (6, "fd42::1")


# --- input checks ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["", "x" * 16, "a/b", "a b", "a\tb", "a:b", ".", "..", 5, None, "é" * 8])
def test_bad_link_names_are_refused_before_anything_is_sent(name):
    with pytest.raises(ConfigError) as info:
        nl.check_name(name)
    assert info.value.where == "netlink" and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["a", "x" * 15, "hutch0", "veth-1.2", "é" * 7])
def test_good_link_names_pass(name):
    assert nl.check_name(name) == name


@pytest.mark.parametrize("text", ["10.1.2.3/33", "10.1.2.3/", "10.1.2/24", "fd42::5/129", "fd42::5/x",
                                  "nonsense", "", None, "10.1.2.3/-1"])
def test_bad_cidrs_are_refused(text):
    with pytest.raises(ConfigError):
        nl.parse_cidr(text)


def test_cidrs_parse_with_and_without_prefix():
    assert nl.parse_cidr("10.1.2.3/24") == (_socket.AF_INET, bytes([10, 1, 2, 3]), 24)
    assert nl.parse_cidr("10.1.2.3")[2] == 32
    assert nl.parse_cidr("fd42::5")[2] == 128
    with pytest.raises(ConfigError, match="not IPv4"):
        nl.parse_cidr("fd42::5/64", 4)


@pytest.mark.parametrize("mtu", [0, -1, "1500", True, 1.5])
def test_bad_mtus_are_refused(mtu):
    with pytest.raises(ConfigError):
        nl.link_attrs("a", mtu=mtu)


# --- the request loop, against a scripted socket ---------------------------------------------------

class ScriptedSocket:
    """Answers each send() with the datagrams a script builds from the request's seq."""

    def __init__(self, *scripts):
        self.scripts = list(scripts)
        self.sent: list[bytes] = []
        self.inbox: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        seq = nl.NLMSGHDR.unpack_from(data)[3]
        self.inbox.extend(self.scripts.pop(0)(seq))
        return len(data)

    def recvmsg(self, size):
        return self.inbox.pop(0), [], 0, (0, 0)

    def close(self):
        pass


def _netlink(sock) -> nl.Netlink:
    obj = nl.Netlink.__new__(nl.Netlink)
    obj._seq, obj.sock = 0, sock
    return obj


def _link_msg(seq, index, name, flags=nl.NLM_F_MULTI):
    return nl.message(nl.RTM_NEWLINK, flags, seq, nl.ifinfo(index) + nl.attr_str(nl.IFLA_IFNAME, name))


def _done(seq, err=0):
    return nl.message(nl.NLMSG_DONE, nl.NLM_F_MULTI, seq, struct.pack("=i", -err))


def test_a_dump_spans_datagrams_skips_stale_replies_and_ends_at_done():
    sock = ScriptedSocket(lambda seq: [
        _link_msg(seq - 1, 99, "stale") + _link_msg(seq, 1, "lo"),
        _link_msg(seq, 2, "hv0") + _link_msg(seq, 3, "hv1"),
        _done(seq)])
    links = _netlink(sock).links()
    assert [(link["index"], link["name"]) for link in links] == [(1, "lo"), (2, "hv0"), (3, "hv1")]
    kind, flags = struct.unpack_from("=HH", sock.sent[0], 4)
    assert kind == nl.RTM_GETLINK and flags & nl.NLM_F_DUMP == nl.NLM_F_DUMP and not flags & nl.NLM_F_ACK


def test_an_interrupted_dump_is_asked_again():
    sock = ScriptedSocket(
        lambda seq: [_link_msg(seq, 1, "lo", nl.NLM_F_MULTI | nl.NLM_F_DUMP_INTR) + _done(seq)],
        lambda seq: [_link_msg(seq, 1, "lo") + _link_msg(seq, 2, "new") + _done(seq)])
    assert [link["name"] for link in _netlink(sock).links()] == ["lo", "new"]
    assert len(sock.sent) == 2
    seqs = [nl.NLMSGHDR.unpack_from(m)[3] for m in sock.sent]
    assert seqs[1] == seqs[0] + 1


def test_a_request_ends_at_its_ack_and_an_error_becomes_netlink_error():
    def ack(err, text=None):
        def script(seq):
            request = nl.message(nl.RTM_DELLINK, 5, seq, b"")
            payload, flags = _error_payload(err, request, text)
            return [nl.message(nl.NLMSG_ERROR, flags, seq, payload)]
        return script

    sock = ScriptedSocket(ack(0), ack(errno.ENODEV), ack(errno.EPERM, "denied here"))
    link = _netlink(sock)
    assert link.delete_link("hv0") is True
    assert link.delete_link("hv0") is False
    with pytest.raises(nl.NetlinkError) as info:
        link.delete_link(7)
    assert str(info.value) == "netlink: cannot delete link 7: Operation not permitted (denied here)"
    assert all(struct.unpack_from("=HH", m, 4)[1] & nl.NLM_F_ACK for m in sock.sent)


def test_a_done_with_an_error_fails_the_dump():
    sock = ScriptedSocket(lambda seq: [_done(seq, errno.EOPNOTSUPP)])
    with pytest.raises(nl.NetlinkError, match="cannot list routes: Operation not supported"):
        _netlink(sock).routes(6)


def test_a_closed_netlink_refuses_requests_cleanly():
    link = _netlink(ScriptedSocket())
    link.close()
    link.close()
    with pytest.raises(HutchError, match="closed"):
        link.links()


def test_a_netlink_socket_opens_without_root_and_lists_its_own_links():
    """Reading links needs no privilege: the dump of this process's netns has lo."""
    with nl.Netlink() as link:
        names = [row["name"] for row in link.links()]
        assert "lo" in names
        assert link.link("lo")["index"] == 1
        assert link.link("hutch-absent0") is None


def test_importing_the_codec_loads_nothing_heavy():
    code = ("import sys; import hutch.net.netlink; print(' '.join(sorted(sys.modules)))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    heavy = {"json", "re", "subprocess", "socket", "enum", "selectors", "ctypes", "_ctypes", "threading",
             "pyroute2", "ipaddress", "contextlib"}
    assert not (loaded & heavy), loaded & heavy
