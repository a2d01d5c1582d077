"""The CNI runtime (net/cni.py) against fake plugins: small scripts that log what they
were given (environment, stdin) and answer as a test tells them.  What the spec asks of
a runtime, without root: order, prevResult chaining, runtimeConfig filtering, error
handling, rollback, the cache, version conversion, GC and STATUS, attach/undo.
The same paths against Debian's real plugins: tests/priv/test_cni_plugins.py."""

from __future__ import annotations

import base64
import json
import os
import sys

import pytest

from hutch.errors import ConfigError, HutchError
from hutch.net import cni

FAKE = r'''#!{python} -S
import json, os, sys
name = os.path.basename(sys.argv[0])
cmd = os.environ.get("CNI_COMMAND")
conf = json.loads(sys.stdin.read() or "{{}}")
env = {{k: v for k, v in os.environ.items() if k.startswith("CNI_")}}
with open(os.environ["FAKE_CNI_LOG"], "a") as f:
    f.write(json.dumps({{"plugin": name, "cmd": cmd, "env": env, "conf": conf}}) + "\n")
rules = json.load(open(os.environ["FAKE_CNI_RULES"])) if os.path.exists(os.environ["FAKE_CNI_RULES"]) else {{}}
rule = rules.get(name + ":" + cmd) or rules.get(name + ":*") or {{}}
if "stderr" in rule:
    sys.stderr.write(rule["stderr"])
if "stdout" in rule:
    sys.stdout.write(rule["stdout"] if isinstance(rule["stdout"], str) else json.dumps(rule["stdout"]))
    sys.exit(rule.get("exit", 0))
if "exit" in rule:
    sys.exit(rule["exit"])
if cmd == "VERSION":
    print(json.dumps({{"cniVersion": conf.get("cniVersion"), "supportedVersions": ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]}}))
elif cmd == "ADD":
    version = rule.get("answer_version", conf["cniVersion"])
    result = conf.get("prevResult") or {{"cniVersion": version, "interfaces": [], "ips": []}}
    result = dict(result, cniVersion=version)
    result["interfaces"] = result.get("interfaces", []) + [{{"name": name}}]
    if "address" in rule:
        ip = {{"address": rule["address"], "interface": len(result["interfaces"]) - 1}}
        if version in ("0.3.0", "0.3.1", "0.4.0"):
            ip["version"] = "4"
        result["ips"] = result.get("ips", []) + [ip]
    print(json.dumps(result))
'''


class Fakes:
    def __init__(self, tmp_path, monkeypatch):
        self.dir = tmp_path / "plugins"
        self.dir.mkdir()
        self.log = tmp_path / "calls.jsonl"
        self.rules_file = tmp_path / "rules.json"
        self.cache = tmp_path / "cache"
        monkeypatch.setenv("FAKE_CNI_LOG", str(self.log))
        monkeypatch.setenv("FAKE_CNI_RULES", str(self.rules_file))
        self.rules: dict = {}

    def plugin(self, *names: str) -> None:
        for name in names:
            path = self.dir / name
            path.write_text(FAKE.format(python=sys.executable))
            path.chmod(0o755)

    def rule(self, key: str, **rule) -> None:
        self.rules[key] = rule
        self.rules_file.write_text(json.dumps(self.rules))

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def runtime(self) -> cni.CniRuntime:
        return cni.CniRuntime(plugin_dirs=[str(self.dir / "none"), str(self.dir)], cache_dir=str(self.cache))


@pytest.fixture
def fakes(tmp_path, monkeypatch) -> Fakes:
    f = Fakes(tmp_path, monkeypatch)
    f.plugin("first", "second", "third")
    f.rule("first:ADD", address="10.220.0.5/24")
    return f


def netlist(version="1.0.0", plugins=None, **extra) -> cni.NetworkList:
    doc = {"cniVersion": version, "name": "fakenet",
           "plugins": plugins or [{"type": "first", "mine": 1},
                                  {"type": "second", "capabilities": {"portMappings": True, "bandwidth": False}},
                                  {"type": "third"}], **extra}
    return cni.parse_conflist(json.dumps(doc), where="test")


PORTS = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
         "bandwidth": {"ingressRate": 1}, "mac": "00:11:22:33:44:55"}


def test_add_runs_plugins_in_order_chaining_prev_result(fakes):
    result = fakes.runtime().add(netlist(), "c1", "/run/netns/x", "eth0", args={"K": "V", "A": "B"},
                                 capability_args=PORTS)
    calls = fakes.calls()
    assert [(c["plugin"], c["cmd"]) for c in calls] == [("first", "ADD"), ("second", "ADD"), ("third", "ADD")]
    env = calls[0]["env"]
    assert env["CNI_CONTAINERID"] == "c1" and env["CNI_NETNS"] == "/run/netns/x"
    assert env["CNI_IFNAME"] == "eth0" and env["CNI_ARGS"] == "K=V;A=B"
    assert env["CNI_PATH"] == f"{fakes.dir / 'none'}:{fakes.dir}"
    first, second, third = (c["conf"] for c in calls)
    assert first == {"type": "first", "mine": 1, "name": "fakenet", "cniVersion": "1.0.0"}
    # only the capabilities the plugin declares (and enables) reach its runtimeConfig
    assert second["runtimeConfig"] == {"portMappings": PORTS["portMappings"]}
    assert "runtimeConfig" not in third
    assert second["prevResult"]["interfaces"] == [{"name": "first"}]
    assert third["prevResult"]["interfaces"] == [{"name": "first"}, {"name": "second"}]
    assert result["interfaces"] == [{"name": "first"}, {"name": "second"}, {"name": "third"}]
    assert result["ips"] == [{"address": "10.220.0.5/24", "interface": 0}]


def test_the_cache_is_libcnis_format(fakes):
    nl = netlist()
    result = fakes.runtime().add(nl, "c1", "/run/netns/x", "eth0", args=[("K", "V")], capability_args=PORTS)
    path = fakes.cache / "results" / "fakenet-c1-eth0"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    cached = json.loads(path.read_text())
    assert cached["kind"] == "cniCacheV1" and cached["containerId"] == "c1"
    assert cached["ifName"] == "eth0" and cached["networkName"] == "fakenet"
    assert cached["netns"] == "/run/netns/x" and cached["cniArgs"] == [["K", "V"]]
    assert cached["capabilityArgs"] == PORTS and cached["result"] == result
    assert json.loads(base64.b64decode(cached["config"])) == nl.raw      # Go's []byte: base64
    assert fakes.runtime().cached("fakenet", "c1", "eth0")["config"] == nl.raw


def test_delete_runs_in_reverse_with_the_cached_result_and_args(fakes):
    rt = fakes.runtime()
    result = rt.add(netlist(), "c1", "/run/netns/x", "eth0", args={"K": "V"}, capability_args=PORTS)
    fakes.log.unlink()
    rt.delete(netlist(), "c1", None, "eth0")
    calls = fakes.calls()
    assert [(c["plugin"], c["cmd"]) for c in calls] == [("third", "DEL"), ("second", "DEL"), ("first", "DEL")]
    assert all(c["conf"]["prevResult"] == result for c in calls)
    assert calls[0]["env"]["CNI_NETNS"] == "" and calls[0]["env"]["CNI_ARGS"] == "K=V"
    assert calls[1]["conf"]["runtimeConfig"] == {"portMappings": PORTS["portMappings"]}
    assert not (fakes.cache / "results" / "fakenet-c1-eth0").exists()
    rt.delete(netlist(), "c1", None, "eth0")           # again: no cache, DEL still runs, no prevResult
    assert all("prevResult" not in c["conf"] for c in fakes.calls()[3:])


def test_delete_of_a_0_3_list_sends_no_prev_result(fakes):
    rt = fakes.runtime()
    rt.add(netlist("0.3.1"), "c1", "/n", "eth0")
    rt.delete(netlist("0.3.1"), "c1", "/n", "eth0")
    assert all("prevResult" not in c["conf"] for c in fakes.calls() if c["cmd"] == "DEL")


def test_check_runs_in_order_with_the_cached_result(fakes):
    rt = fakes.runtime()
    result = rt.add(netlist(), "c1", "/n", "eth0")
    fakes.log.unlink()
    rt.check(netlist(), "c1", "/n", "eth0")
    calls = fakes.calls()
    assert [(c["plugin"], c["cmd"]) for c in calls] == [("first", "CHECK"), ("second", "CHECK"), ("third", "CHECK")]
    assert all(c["conf"]["prevResult"] == result for c in calls)


def test_check_needs_0_4_a_cache_and_honours_disable_check(fakes):
    rt = fakes.runtime()
    with pytest.raises(ConfigError, match="CHECK needs cniVersion 0.4.0 or later, the list has 0.3.1"):
        rt.check(netlist("0.3.1"), "c1", "/n", "eth0")
    with pytest.raises(HutchError, match=r"no cached result for container c1 interface eth0 .*was ADD run"):
        rt.check(netlist(), "c1", "/n", "eth0")
    rt.check(netlist(disableCheck=True), "c1", "/n", "eth0")
    assert fakes.calls() == []


def test_a_failing_plugin_gives_its_cni_error_and_add_rolls_back(fakes):
    fakes.rule("third:ADD", exit=1, stdout={"cniVersion": "1.0.0", "code": 7, "msg": "bad subnet",
                                            "details": "10.999.0.0/24 is not a CIDR"})
    rt = fakes.runtime()
    with pytest.raises(cni.CniPluginError) as info:
        rt.add(netlist(), "c1", "/n", "eth0", capability_args=PORTS)
    err = info.value
    assert str(err) == ("network fakenet: plugin third: ADD failed: bad subnet: 10.999.0.0/24 is not a CIDR "
                        "(CNI error 7: invalid network config)")
    assert err.code == 7 and err.plugin == "third" and err.network == "fakenet"
    calls = [(c["plugin"], c["cmd"]) for c in fakes.calls()]
    # the spec: DEL for every plugin of the list, in reverse, even those never called
    assert calls[3:] == [("third", "DEL"), ("second", "DEL"), ("first", "DEL")]
    dels = [c for c in fakes.calls() if c["cmd"] == "DEL"]
    assert dels[0]["conf"]["prevResult"]["interfaces"] == [{"name": "first"}, {"name": "second"}]
    assert dels[1]["conf"]["runtimeConfig"] == {"portMappings": PORTS["portMappings"]}
    assert not (fakes.cache / "results" / "fakenet-c1-eth0").exists()


def test_a_failed_rollback_is_mentioned_after_the_add_error(fakes):
    fakes.rule("second:ADD", exit=1, stdout={"code": 11, "msg": "busy"})
    fakes.rule("first:DEL", exit=2, stderr="panic: boom\n")
    with pytest.raises(cni.CniPluginError) as info:
        fakes.runtime().add(netlist(), "c1", "/n", "eth0")
    assert str(info.value) == ("network fakenet: plugin second: ADD failed: busy (CNI error 11: try again "
                               "later); and DEL after the failed ADD: network fakenet: plugin first: DEL "
                               "failed: exit status 2: panic: boom")


@pytest.mark.parametrize("rule, message", [
    ({"exit": 1, "stderr": "oops\nlast words\n"}, "ADD failed: exit status 1: last words"),
    ({"exit": 1, "stdout": "not json"}, "ADD failed: exit status 1"),
    ({"exit": 1, "stdout": {"code": 100, "msg": "custom\nfailure"}}, "ADD failed: custom failure (CNI error 100)"),
    ({"stdout": "{broken"}, "ADD failed: wrote no valid result: plugin output: invalid JSON"),
    ({"stdout": ""}, "ADD failed: returned no result"),
])
def test_plugin_failures_are_one_line(fakes, rule, message):
    fakes.rule("first:ADD", **rule)
    with pytest.raises(cni.CniPluginError) as info:
        fakes.runtime().add(netlist(), "c1", "/n", "eth0")
    assert str(info.value).startswith(f"network fakenet: plugin first: {message}"), str(info.value)
    assert "\n" not in str(info.value)


def test_a_missing_plugin_names_itself_and_the_dirs_searched(fakes):
    nl = netlist(plugins=[{"type": "first"}, {"type": "nosuch"}])
    with pytest.raises(HutchError) as info:
        fakes.runtime().add(nl, "c1", "/n", "eth0")
    assert str(info.value) == (f"network fakenet: plugin nosuch: CNI plugin 'nosuch' not found in "
                               f"{fakes.dir / 'none'}:{fakes.dir}; and DEL after the failed ADD: network "
                               f"fakenet: plugin nosuch: CNI plugin 'nosuch' not found in {fakes.dir / 'none'}:{fakes.dir}")
    assert [(c["plugin"], c["cmd"]) for c in fakes.calls()] == [("first", "ADD"), ("first", "DEL")]


def test_results_are_converted_to_the_list_version(fakes):
    fakes.rule("first:ADD", address="10.220.0.5/24", answer_version="0.4.0")
    result = fakes.runtime().add(netlist("1.0.0"), "c1", "/n", "eth0")
    assert result["cniVersion"] == "1.0.0" and result["ips"] == [{"address": "10.220.0.5/24", "interface": 0}]
    second = fakes.calls()[1]["conf"]
    assert second["prevResult"]["cniVersion"] == "1.0.0" and "version" not in second["prevResult"]["ips"][0]


def test_convert_result_between_every_shape():
    current = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}],
               "ips": [{"address": "10.220.0.5/24", "gateway": "10.220.0.1", "interface": 0},
                       {"address": "fd40::5/64", "interface": 0}],
               "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}], "dns": {"nameservers": ["10.220.0.1"]}}
    old = cni.convert_result(current, "0.4.0")
    assert [ip["version"] for ip in old["ips"]] == ["4", "6"] and old["cniVersion"] == "0.4.0"
    assert cni.convert_result(old, "1.0.0") == current
    legacy = cni.convert_result(current, "0.2.0")
    assert legacy == {"cniVersion": "0.2.0", "dns": {"nameservers": ["10.220.0.1"]},
                      "ip4": {"ip": "10.220.0.5/24", "gateway": "10.220.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
                      "ip6": {"ip": "fd40::5/64", "routes": [{"dst": "::/0"}]}}
    up = cni.convert_result(legacy, "1.0.0")
    assert up["ips"] == [{"address": "10.220.0.5/24", "gateway": "10.220.0.1"}, {"address": "fd40::5/64"}]
    assert up["routes"] == current["routes"]
    assert current["ips"][0] == {"address": "10.220.0.5/24", "gateway": "10.220.0.1", "interface": 0}  # untouched


def test_version_query(fakes):
    assert fakes.runtime().version("first")["supportedVersions"] == ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]
    assert fakes.calls()[0]["env"]["CNI_COMMAND"] == "VERSION"
    fakes.rule("second:VERSION", stdout={"cniVersion": "0.1.0"})
    assert fakes.runtime().version("second")["supportedVersions"] == ["0.1.0"]
    with pytest.raises(HutchError, match="plugin nosuch: CNI plugin 'nosuch' not found"):
        fakes.runtime().version("nosuch")


def test_gc_of_an_old_list_deletes_cached_attachments_not_valid(fakes):
    rt = fakes.runtime()
    for cid in ("keep", "stale1", "stale2"):
        rt.add(netlist(), cid, f"/nonexistent/{cid}", "eth0")
    other = netlist(plugins=[{"type": "first"}])
    other.name = "othernet"
    rt.add(other, "stale3", "/n", "eth0")
    fakes.log.unlink()
    deleted = rt.gc(netlist(), [("keep", "eth0")])
    assert deleted == [("stale1", "eth0"), ("stale2", "eth0")]
    assert sorted(os.listdir(fakes.cache / "results")) == ["fakenet-keep-eth0", "othernet-stale3-eth0"]
    calls = fakes.calls()
    assert {c["env"]["CNI_CONTAINERID"] for c in calls} == {"stale1", "stale2"}
    assert all(c["cmd"] == "DEL" and c["env"]["CNI_NETNS"] == "" for c in calls)   # netns is gone
    assert rt.gc(netlist(disableGC=True), []) == [] and len(fakes.calls()) == len(calls)


def test_gc_of_a_1_1_list_also_calls_gc_with_the_valid_attachments(fakes):
    rt = fakes.runtime()
    rt.add(netlist("1.1.0"), "stale", "/n", "eth0")
    fakes.log.unlink()
    rt.gc(netlist("1.1.0"), [{"containerID": "keep", "ifname": "eth1"}])
    calls = [(c["plugin"], c["cmd"]) for c in fakes.calls()]
    assert calls == [("third", "DEL"), ("second", "DEL"), ("first", "DEL"),
                     ("first", "GC"), ("second", "GC"), ("third", "GC")]
    gc = fakes.calls()[3]["conf"]
    assert gc["cni.dev/valid-attachments"] == [{"containerID": "keep", "ifname": "eth1"}]
    assert gc["name"] == "fakenet" and gc["cniVersion"] == "1.1.0"


def test_status(fakes):
    rt = fakes.runtime()
    assert rt.status(netlist("1.0.0")) is True and fakes.calls() == []      # no STATUS before 1.1.0
    assert rt.status(netlist("1.1.0")) is True
    assert [c["cmd"] for c in fakes.calls()] == ["STATUS"] * 3
    fakes.rule("second:STATUS", exit=1, stdout={"code": 50, "msg": "no leases left"})
    with pytest.raises(cni.CniPluginError) as info:
        rt.status(netlist("1.1.0"))
    assert info.value.code == 50 and "(CNI error 50: plugin not available)" in str(info.value)


def test_bad_ids_are_refused_before_any_plugin_runs(fakes):
    with pytest.raises(ConfigError, match="invalid interface name"):
        fakes.runtime().add(netlist(), "c1", "/n", "eth0:1")
    with pytest.raises(ConfigError, match="invalid container id"):
        fakes.runtime().add(netlist(), "c/1", "/n", "eth0")
    assert fakes.calls() == []


# --- attach / undo ---------------------------------------------------------------------------

class FakeState:
    id = "ctr1"


class FakeCtx:
    def __init__(self, root, pid):
        self.root, self.pid, self.state, self.entries = str(root), pid, FakeState(), []

    def own(self, entry):
        # the entry must be written before anything is made: no plugin has run yet
        assert not os.path.exists(os.environ["FAKE_CNI_LOG"])
        json.dumps(entry)                    # a journal entry must be JSON
        self.entries.append(entry)
        return entry


@pytest.fixture
def confdir(tmp_path):
    d = tmp_path / "net.d"
    d.mkdir()
    (d / "10-fakenet.conflist").write_text(json.dumps(netlist().raw))
    return d


def test_attach_records_first_then_adds_and_undo_deletes(fakes, confdir, tmp_path):
    ctx = FakeCtx(tmp_path / "root", os.getpid())
    result = cni.attach(ctx, "fakenet", "eth0", [str(confdir)], PORTS, plugin_dirs=[str(fakes.dir)])
    [entry] = ctx.entries
    assert entry["kind"] == "cni" and entry["key"] == "cni:fakenet:eth0"
    assert entry["container_id"] == "ctr1" and entry["netns"] == f"/proc/{os.getpid()}/ns/net"
    assert entry["conf"] == netlist().raw and entry["cache_dir"] == str(tmp_path / "root" / ".net" / "cni")
    assert result["ips"][0]["address"] == "10.220.0.5/24"
    assert os.path.exists(tmp_path / "root" / ".net" / "cni" / "results" / "fakenet-ctr1-eth0")
    (confdir / "10-fakenet.conflist").unlink()          # undo needs no config file
    fakes.log.unlink()
    cni.undo(entry)
    calls = fakes.calls()
    assert [(c["plugin"], c["cmd"]) for c in calls] == [("third", "DEL"), ("second", "DEL"), ("first", "DEL")]
    assert calls[0]["env"]["CNI_NETNS"] == entry["netns"]            # still the same namespace
    assert calls[1]["conf"]["runtimeConfig"] == {"portMappings": PORTS["portMappings"]}
    assert not os.listdir(tmp_path / "root" / ".net" / "cni" / "results")
    cni.undo(entry)                                      # idempotent: DEL again, from the saved conf
    assert len(fakes.calls()) == 6


def test_undo_passes_no_netns_when_the_path_names_another_namespace(fakes, confdir, tmp_path):
    ctx = FakeCtx(tmp_path / "root", os.getpid())
    cni.attach(ctx, "fakenet", "eth0", [str(confdir)], plugin_dirs=[str(fakes.dir)])
    entry = dict(ctx.entries[0], netns_id=[0, 1])         # as if the pid had been reused
    fakes.log.unlink()
    cni.undo(entry)
    assert {c["env"]["CNI_NETNS"] for c in fakes.calls()} == {""}


def test_undo_ignores_not_found_without_a_cache_and_reports_other_failures(fakes, confdir, tmp_path):
    ctx = FakeCtx(tmp_path / "root", os.getpid())
    fakes.rule("first:ADD", exit=1, stdout={"code": 7, "msg": "bad"})
    with pytest.raises(cni.CniPluginError):
        cni.attach(ctx, "fakenet", "eth0", [str(confdir)], plugin_dirs=[str(fakes.dir)])
    entry = ctx.entries[0]                                # recorded although ADD failed
    fakes.rule("second:DEL", exit=1, stdout={"code": 3, "msg": "container not found"})
    cni.undo(entry)
    fakes.rule("second:DEL", exit=1, stdout={"code": 5, "msg": "iptables is locked"})
    with pytest.raises(HutchError) as info:
        cni.undo(entry)
    assert str(info.value) == ("cni:fakenet: CNI DEL of container ctr1 interface eth0: network fakenet: "
                               "plugin second: DEL failed: iptables is locked (CNI error 5: I/O failure)")
