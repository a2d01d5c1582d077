"""Loading CNI network configuration lists (net/cni.py): libcni's search order, the
single-plugin .conf wrapped as a list, and one line naming file and JSON path for
every bad input."""

from __future__ import annotations

import json

import pytest

from hutch.errors import ConfigError
from hutch.net import cni

BRIDGE = {"type": "bridge", "bridge": "hcni0", "ipam": {"type": "host-local", "subnet": "10.210.0.0/24"}}


def write(directory, name, doc) -> str:
    path = directory / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2))
    return str(path)


def conflist(name="net1", version="1.0.0", plugins=None, **extra) -> dict:
    return {"cniVersion": version, "name": name, "plugins": plugins or [BRIDGE], **extra}


def error_of(tmp_path, doc, name="net1", file="10-net.conflist") -> ConfigError:
    path = write(tmp_path, file, doc)
    with pytest.raises(ConfigError) as info:
        cni.load_conflist(name, [str(tmp_path)])
    assert "\n" not in str(info.value)
    assert path in str(info.value)
    return info.value


def test_a_conflist_is_found_by_name_among_files_sorted_by_name(tmp_path):
    write(tmp_path, "20-b.conflist", conflist("net1", plugins=[{"type": "second"}]))
    write(tmp_path, "10-a.conflist", conflist("net1", plugins=[{"type": "first"}]))
    write(tmp_path, "05-other.conflist", conflist("other"))
    write(tmp_path, "notes.txt", "not a config")
    netlist = cni.load_conflist("net1", [str(tmp_path)])
    assert netlist.name == "net1" and netlist.cni_version == "1.0.0"
    assert [p["type"] for p in netlist.plugins] == ["first"]
    assert netlist.source == str(tmp_path / "10-a.conflist")
    assert not netlist.disable_check and not netlist.disable_gc


def test_conflists_win_over_single_plugin_files_and_directories_are_searched_in_order(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    write(one, "00-net1.conf", {"cniVersion": "0.4.0", "name": "net1", "type": "single"})
    write(one, "99-net1.conflist", conflist("net1", plugins=[{"type": "listed"}]))
    write(two, "00-net1.conflist", conflist("net1", plugins=[{"type": "later-dir"}]))
    assert cni.load_conflist("net1", [str(one), str(two)]).plugins[0]["type"] == "listed"
    assert cni.load_conflist("net1", [str(tmp_path / "missing"), str(two)]).plugins[0]["type"] == "later-dir"


@pytest.mark.parametrize("ext", [".conf", ".json"])
def test_a_single_plugin_file_is_wrapped_as_a_list(tmp_path, ext):
    write(tmp_path, f"10-single{ext}", {"cniVersion": "0.3.1", "name": "solo", "type": "bridge", "mtu": 1400})
    netlist = cni.load_conflist("solo", [str(tmp_path)])
    assert netlist.cni_version == "0.3.1"
    assert netlist.plugins == [{"cniVersion": "0.3.1", "name": "solo", "type": "bridge", "mtu": 1400}]
    assert netlist.raw["plugins"] == netlist.plugins


def test_disable_check_and_disable_gc_take_booleans_and_their_strings(tmp_path):
    write(tmp_path, "a.conflist", conflist(disableCheck=True, disableGC="TRUE"))
    netlist = cni.load_conflist("net1", [str(tmp_path)])
    assert netlist.disable_check and netlist.disable_gc
    err = error_of(tmp_path, conflist(disableGC="yes"), file="a.conflist")
    assert str(err).endswith("$.disableGC: disableGC must be true or false, not 'yes'")


def test_cni_versions_picks_the_highest_this_runtime_speaks(tmp_path):
    write(tmp_path, "a.conflist", {"name": "net1", "cniVersions": ["0.4.0", "1.1.0", "9.0.0"], "plugins": [BRIDGE]})
    assert cni.load_conflist("net1", [str(tmp_path)]).cni_version == "1.1.0"


def test_no_such_network_names_the_directories(tmp_path):
    write(tmp_path, "a.conflist", conflist("other"))
    with pytest.raises(ConfigError) as info:
        cni.load_conflist("net1", [str(tmp_path), "/nonexistent"])
    assert str(info.value) == f"cni:net1: no CNI network named 'net1' in {tmp_path}, /nonexistent"


def test_malformed_json_names_file_line_and_column(tmp_path):
    err = error_of(tmp_path, '{\n  "name": "net1",\n  "plugins": [,]\n}')
    assert "line 3, column" in str(err) and str(err).startswith(str(tmp_path / "10-net.conflist"))


def test_a_malformed_file_before_the_match_is_an_error_as_in_libcni(tmp_path):
    write(tmp_path, "20-good.conflist", conflist())
    err = error_of(tmp_path, "{", file="10-broken.conflist")
    assert "10-broken.conflist" in str(err)


@pytest.mark.parametrize("doc, path, message", [
    ([1, 2], "", "must hold a JSON object, not an array"),
    ({"cniVersion": "1.0.0", "plugins": [BRIDGE]}, "$.name", "missing network name"),
    (conflist(name="-bad name"), "$.name", "invalid network name '-bad name'"),
    (conflist(name=7), "$.name", "invalid network name 7"),
    ({"name": "net1", "plugins": [BRIDGE]}, "$.cniVersion", "missing cniVersion"),
    (conflist(version="1.0"), "$.cniVersion", "'1.0' is not a version (X.Y.Z)"),
    (conflist(version=1), "$.cniVersion", "cniVersion must be a string, not a number"),
    (conflist(version="2.0.0"), "$.cniVersion", "unsupported cniVersion '2.0.0'"),
    ({"name": "net1", "cniVersions": "1.0.0", "plugins": [BRIDGE]}, "$.cniVersions", "must be an array"),
    ({"name": "net1", "cniVersions": ["1.x"], "plugins": [BRIDGE]}, "$.cniVersions[0]", "is not a version"),
    ({"name": "net1", "cniVersions": ["7.0.0"], "plugins": [BRIDGE]}, "$.cniVersions", "no version this runtime supports"),
    ({"name": "net1", "cniVersion": "1.0.0"}, "$.plugins", "missing plugins"),
    (conflist(plugins={"type": "bridge"}), "$.plugins", "plugins must be an array, not an object"),
    ({"name": "net1", "cniVersion": "1.0.0", "plugins": []}, "$.plugins", "plugins is empty"),
    (conflist(plugins=[BRIDGE, "portmap"]), "$.plugins[1]", "a plugin must be an object, not a string"),
    (conflist(plugins=[BRIDGE, {"capabilities": {}}]), "$.plugins[1].type", "missing plugin type"),
    (conflist(plugins=[{"type": "../../bin/sh"}]), "$.plugins[0].type", "invalid plugin type '../../bin/sh'"),
    (conflist(plugins=[{"type": ""}]), "$.plugins[0].type", "invalid plugin type ''"),
    (conflist(plugins=[{"type": "portmap", "capabilities": {"portMappings": "yes"}}]),
     "$.plugins[0].capabilities", "capabilities must be an object of booleans"),
    (conflist(disableCheck=1), "$.disableCheck", "disableCheck must be true or false"),
])
def test_every_bad_input_is_one_line_naming_the_file_and_json_path(tmp_path, doc, path, message):
    err = error_of(tmp_path, doc)
    where = str(tmp_path / "10-net.conflist") + (f": {path}" if path else "")
    assert err.where == where, err
    assert message in err.message, err


def test_a_single_plugin_file_without_type_names_its_path(tmp_path):
    err = error_of(tmp_path, {"cniVersion": "1.0.0", "name": "net1"}, file="10-x.conf")
    assert err.where == f"{tmp_path / '10-x.conf'}: $.type" and err.message == "missing plugin type"


def test_parse_conflist_from_bytes_names_its_where():
    netlist = cni.parse_conflist(json.dumps(conflist()).encode(), where="inline")
    assert netlist.source == "inline" and netlist.plugins == [BRIDGE]
    with pytest.raises(ConfigError, match=r"^inline: \$\.plugins: plugins is empty"):
        cni.parse_conflist('{"name":"n","cniVersion":"1.0.0","plugins":[]}', where="inline")


@pytest.mark.parametrize("ifname", ["", "a" * 16, ".", "..", "a/b", "a:b", "a b"])
def test_bad_interface_names_are_refused(ifname):
    with pytest.raises(ConfigError, match="invalid interface name"):
        cni.check_ifname(ifname)


@pytest.mark.parametrize("cid", ["", "-x", "a/b", "a b", None])
def test_bad_container_ids_are_refused(cid):
    with pytest.raises(ConfigError, match="invalid container id"):
        cni.check_container_id(cid)


def test_version_tuple():
    assert cni.version_tuple("1.10.0") == (1, 10, 0)
    assert cni.version_tuple("1.0") is None and cni.version_tuple("a.b.c") is None
    assert cni.version_tuple(None) is None


def test_cni_module_imports_nothing_heavy():
    import subprocess
    import sys
    code = "import sys, hutch.net.cni; print(' '.join(sys.modules))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    assert not loaded & {"json", "re", "subprocess", "socket", "ctypes"}
