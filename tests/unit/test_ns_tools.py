"""Pure logic of the namespace tools: parsers, lsns formatting, nsenter options, netlink."""

from __future__ import annotations

import json
import struct

import pytest

from hutch.errors import ConfigError
from hutch.ns import info
from hutch.ns.info import Namespace
from hutch.ns.nsid import (NETNSA_FD, NETNSA_NSID, RTM_GETNSID, build_request, format_nsid,
                           parse_reply)
from hutch.tools import lsns, netns, nsenter


# --- /proc parsers -----------------------------------------------------------------

def test_parse_nsfs_link():
    assert info.parse_nsfs_link("net:[4026532008]") == ("net", 4026532008)
    assert info.parse_nsfs_link("time:[1]") == ("time", 1)
    assert info.parse_nsfs_link("pipe:[123]") is None
    assert info.parse_nsfs_link("socket:[123]") is None
    assert info.parse_nsfs_link("/dev/null") is None


def test_parse_stat_ppid_with_hostile_comm():
    assert info.parse_stat_ppid(b"42 (a) b) c) S 7 42 42 0 -1") == 7
    assert info.parse_stat_ppid(b"1 (init) S 0 1 1") == 0


def test_format_command():
    assert info.format_command(b"sleep\x00100\x00") == "sleep 100"
    assert info.format_command(b"", "kthreadd") == "kthreadd"
    assert info.format_command(b"sh\x00-c\x00echo a b\x00") == "sh -c echo a b"


MOUNTINFO = """\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
61 27 254:0 /run/netns /run/netns rw,relatime shared:1 - ext4 /dev/vda rw
62 61 0:4 net:[4026532300] /run/netns/a rw shared:2 - nsfs nsfs rw
63 61 0:4 net:[4026532300] /run/netns/a\\040b rw shared:2 - nsfs nsfs rw
64 27 0:4 uts:[4026532301] /tmp/u rw - nsfs nsfs rw
65 27 0:5 / /proc rw - proc proc rw
"""


def test_nsfs_mounts_from_mountinfo():
    assert info.nsfs_mounts(MOUNTINFO) == [
        ("net", 4026532300, "/run/netns/a"),
        ("net", 4026532300, "/run/netns/a b"),
        ("uts", 4026532301, "/tmp/u"),
    ]


def test_join_nsfs_keeps_order_without_repeats():
    assert info.join_nsfs(["/a", "/b", "/a"]) == ["/a", "/b"]


def test_namespace_type_aliases_and_unknown():
    assert info.namespace_type("network") == "net"
    assert info.namespace_type("mount") == "mnt"
    with pytest.raises(ConfigError, match="unknown namespace type"):
        info.namespace_type("bogus")


# --- lsns output ----------------------------------------------------------------------

def _rows():
    user = Namespace(ns=10, type="user", nprocs=3, pid=1, ppid=0, uid=0, user="root",
                     command="init", pns=0, ons=0)
    net = Namespace(ns=11, type="net", nprocs=2, pid=1, ppid=0, uid=0, user="root",
                    command="init", netnsid="unassigned", pns=0, ons=10)
    child_user = Namespace(ns=12, type="user", nprocs=1, pid=5, ppid=1, uid=1000, user="u",
                           command="sleep 1", pns=10, ons=10)
    child_net = Namespace(ns=13, type="net", nprocs=0, netnsid="3", nsfs=["/run/netns/x"],
                          pns=0, ons=12, containers=["c1"], held_by="mount")
    return [user, net, child_user, child_net]


def test_json_shape_matches_lsns():
    out = json.loads(lsns.to_json(_rows(), ["NS", "TYPE", "NPROCS", "PID", "NETNSID", "NSFS",
                                             "PNS", "ONS", "CONTAINER"]))
    assert list(out) == ["namespaces"]
    first, _, _, last = out["namespaces"]
    assert first == {"ns": 10, "type": "user", "nprocs": 3, "pid": 1, "netnsid": None,
                     "nsfs": None, "pns": 0, "ons": 0, "container": None}
    assert last["pid"] is None and last["nsfs"] == "/run/netns/x" and last["netnsid"] == "3"
    assert last["container"] == "c1"


def test_json_owner_tree_nests_children():
    out = json.loads(lsns.to_json(_rows(), ["NS", "TYPE"], tree="owner"))
    (root,) = out["namespaces"]
    assert root["ns"] == 10
    assert [c["ns"] for c in root["children"]] == [11, 12]
    assert root["children"][1]["children"] == [{"ns": 13, "type": "net"}]


def test_parent_tree_only_links_pid_and_user():
    forest = lsns.build_forest(_rows(), "parent")
    assert [row.ns for row, _ in forest] == [10, 11, 13]
    assert [row.ns for row, _ in forest[0][1]] == [12]


def test_table_alignment_and_tree_art():
    text = lsns.to_table(_rows(), ["NS", "TYPE", "NPROCS"], tree="owner")
    lines = text.splitlines()
    assert lines[0].split() == ["NS", "TYPE", "NPROCS"]
    assert lines[1].startswith("10 ")
    assert lines[2].startswith("├─11")
    assert lines[3].startswith("└─12")
    assert lines[4].startswith("  └─13")
    flat = lsns.to_table(_rows(), ["NS", "NPROCS"], headings=False).splitlines()
    # NS gets its width hint (10), NPROCS its unprinted heading's width (6), as lsns
    assert flat[0] == "10".rjust(10) + " " + "3".rjust(6)


def test_parse_columns():
    assert lsns.parse_columns("ns,type", ["PID"]) == ["NS", "TYPE"]
    assert lsns.parse_columns("+netnsid", ["NS"]) == ["NS", "NETNSID"]
    assert lsns.parse_columns(None, ["NS"]) == ["NS"]
    with pytest.raises(ConfigError, match="unknown column"):
        lsns.parse_columns("NS,BOGUS", [])
    assert "NETNSID" in lsns.default_columns(["net"])
    assert "NETNSID" not in lsns.default_columns(None)


# --- nsenter options --------------------------------------------------------------------

def test_nsenter_getopt_rules():
    opts = nsenter.parse_args(["-t", "42", "-n", "-m/run/x", "--uts=/u", "-U", "--", "ip", "a"])
    assert opts.target_pid == 42
    assert opts.namespaces == {"net": None, "mnt": "/run/x", "uts": "/u", "user": None}
    assert opts.command == ["ip", "a"]
    opts = nsenter.parse_args(["-t42", "-aF", "-S", "1", "-G2", "--preserve-credentials", "sh"])
    assert (opts.target_pid, opts.all, opts.fork, opts.uid, opts.gid) == (42, True, False, 1, 2)
    assert opts.preserve_credentials and opts.command == ["sh"]
    # an optional argument is the rest of the cluster, as getopt does
    assert nsenter.parse_args(["-t", "1", "-nu"]).namespaces == {"net": "u"}
    opts = nsenter.parse_args(["-t", "1", "-r", "-w/tmp", "true"])
    assert (opts.root, opts.wd) == ("", "/tmp")


def test_nsenter_container_word():
    opts = nsenter.parse_args(["web", "--", "ps"])
    assert (opts.container, opts.command) == ("web", ["ps"])
    opts = nsenter.parse_args(["-n", "web", "ip", "a"])
    assert (opts.container, opts.command) == ("web", ["ip", "a"])
    # every namespace from a file: the word is the command, as in nsenter
    opts = nsenter.parse_args(["--net=/run/netns/x", "ip", "a"])
    assert (opts.container, opts.command) == (None, ["ip", "a"])
    opts = nsenter.parse_args(["-t", "1", "-n", "web"])
    assert (opts.container, opts.command) == (None, ["web"])


@pytest.mark.parametrize("argv", [["-x"], ["--bogus"], ["-t"], ["-t", "abc"], ["-S", "-1"],
                                  ["--all=yes"]])
def test_nsenter_bad_options(argv):
    with pytest.raises(ConfigError):
        nsenter.parse_args(argv)


# --- netlink and netns ------------------------------------------------------------------

def test_nsid_request_layout():
    msg = build_request(RTM_GETNSID, 1, 7, [(NETNSA_FD, 5)])
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", msg)
    assert (length, kind, flags, seq, pid) == (len(msg), RTM_GETNSID, 1, 7, 0)
    assert msg[16] == 0                                    # AF_UNSPEC, padded to 4
    assert struct.unpack_from("=HHi", msg, 20) == (8, NETNSA_FD, 5)


def test_nsid_reply_parsing():
    body = struct.pack("=B3x", 0) + struct.pack("=HHi", 8, NETNSA_NSID, 3)
    reply = struct.pack("=IHHII", 16 + len(body), 88, 0, 1, 0) + body
    assert parse_reply(reply) == (0, {NETNSA_NSID: 3})
    error = struct.pack("=IHHII", 36, 2, 0, 1, 0) + struct.pack("=i", -17) + b"\0" * 16
    assert parse_reply(error) == (17, {})


def test_format_nsid():
    assert format_nsid(-1) == "unassigned"
    assert format_nsid(0) == "0"
    assert format_nsid(None) is None
    assert format_nsid(-2) is None


@pytest.mark.parametrize("name", ["", "a/b", ".", "..", "x" * 255])
def test_netns_bad_names(name):
    with pytest.raises(ConfigError):
        netns.check_name(name)


def test_netns_list_format():
    assert netns.format_list([("a", None), ("b", 4)]) == "a\nb (id: 4)\n"


def test_nsenter_words_after_dashdash_are_the_command():
    opts = nsenter.parse_args(["-n", "--", "true"])
    assert (opts.container, opts.command) == (None, ["true"])


def test_namespace_type_the_kernel_lacks(monkeypatch):
    real_exists = info.os.path.exists
    monkeypatch.setattr(info.os.path, "exists",
                        lambda p: False if p == "/proc/self/ns/time" else real_exists(p))
    with pytest.raises(ConfigError, match="not supported by this kernel"):
        info.namespace_type("time")
    assert "time" not in info.supported_types()


def test_process_tree_follows_lsns_outline_rule():
    # pid 1 stands for ns 10 and 11: its latest row (11) is the parent of pid 5's rows;
    # a row without a process is never nested.
    rows = [Namespace(ns=10, type="mnt", pid=1, ppid=0, command="init"),
            Namespace(ns=11, type="net", pid=1, ppid=0, command="init"),
            Namespace(ns=12, type="mnt", pid=5, ppid=1, command="b"),
            Namespace(ns=13, type="uts", pid=7, ppid=5, command="c"),
            Namespace(ns=14, type="net", pid=None, ppid=None)]
    forest = lsns.build_forest(rows, "process")
    assert [r.ns for r, _ in forest] == [10, 11, 14]
    (child, grand), = forest[1][1]
    assert child.ns == 12 and [r.ns for r, _ in grand] == [13]
    table = lsns.to_table(rows, ["NS", "COMMAND"], tree="process").splitlines()
    ns = [line[:10].strip() for line in table]
    assert ns[3:] == ["12", "13", "14"] and all(len(line[:10]) == 10 for line in table[1:])
    assert [line[11:] for line in table[3:]] == ["└─b", "  └─c", ""]


def test_json_nests_only_with_the_tree_column_and_keeps_lsns_line_order():
    rows = _rows()
    flat = json.loads(lsns.to_json(rows, ["TYPE", "PID"], tree="owner"))["namespaces"]
    assert all("children" not in r for r in flat) and len(flat) == 4
    # parent tree: 11 (no parent) has its owner 10 added first; 13's owner 12 comes first too
    rows[0].ns, rows[0].pns = 20, 0          # the owner of 11 and 12 now sorts after them
    rows[1].ons = rows[2].pns = rows[2].ons = 20
    order = [r.ns for r, _ in lsns.lines(sorted(rows, key=lambda r: r.ns), "parent")]
    assert order == [20, 11, 12, 13]


def test_json_layout_and_escapes_are_libsmartcols():
    row = Namespace(ns=7, type="net", command='a "b"\\\tc\x01é', pid=None)
    text = lsns.to_json([row, row], ["NS", "COMMAND", "PID"])
    assert text == ('{\n   "namespaces": [\n      {\n         "ns": 7,\n'
                    '         "command": "a \\"b\\"\\\\\\tc\\u0001é",\n         "pid": null\n'
                    '      },{\n         "ns": 7,\n'
                    '         "command": "a \\"b\\"\\\\\\tc\\u0001é",\n         "pid": null\n'
                    '      }\n   ]\n}\n')
    assert json.loads(text)["namespaces"][0]["command"] == row.command
