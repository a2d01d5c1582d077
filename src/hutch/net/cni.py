"""hutch as a CNI runtime: network configuration lists, plugin calls, the result cache.

What the CNI specification asks of a runtime, done here without libcni:

* `load_conflist` finds a network by name in the configuration directories, the way
  libcni does (``*.conflist`` first, then single-plugin ``*.conf``/``*.json`` files
  wrapped as a one-plugin list; files sorted by name) and checks it: every problem is
  one ConfigError line naming the file and the JSON path.
* `CniRuntime` executes the plugins: ADD in list order, each getting the previous
  plugin's result as ``prevResult``; DEL in reverse order with the cached ADD result;
  CHECK in order with the cached result; GC and STATUS natively for 1.1.0 lists and
  emulated for older ones.  Results are converted to the list's ``cniVersion`` (the
  spec wants a chained plugin to see prevResult in the version of its config).
* The result cache is libcni's: ``CACHE/results/NET-CONTAINER-IFNAME`` holding a
  ``cniCacheV1`` object (the list's bytes, base64, as Go marshals []byte; the result;
  args), so a cache written by hutch is readable by libcni tools and back.
* `attach`/`undo` are the setup step and its ownership-journal undo for hutch's own
  containers (`hutch run --network cni:NAME`).

This module is on the `hutch run --network` path: no `json`, `re` or `subprocess` at
import (subprocess is imported when a plugin is executed)."""

from __future__ import annotations

import binascii
import os

from hutch import fastjson
from hutch.checks import kind
from hutch.errors import ConfigError, HutchError

DEFAULT_CONF_DIRS = ("/etc/cni/net.d",)
DEFAULT_PLUGIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
DEFAULT_CACHE_DIR = "/var/lib/cni"     # libcni's; hutch's containers use ROOT/.net/cni
CACHE_KIND = "cniCacheV1"
PLUGIN_TIMEOUT = 60.0                  # seconds; a plugin that hangs must not hang `hutch run`

# Spec versions this runtime speaks (a list may name any of them).
SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

# CNI error codes the runtime acts on (SPEC.md "Error" section).
ERR_INCOMPATIBLE_VERSION = 1
ERR_UNKNOWN_CONTAINER = 3
ERR_TRY_AGAIN_LATER = 11
ERR_NOT_AVAILABLE = 50
ERR_LIMITED_CONNECTIVITY = 51
_WELL_KNOWN_CODES = {
    1: "incompatible CNI version", 2: "unsupported field in network configuration",
    3: "container unknown or does not exist", 4: "invalid necessary environment variables",
    5: "I/O failure", 6: "failed to decode content", 7: "invalid network config",
    11: "try again later", 50: "plugin not available", 51: "limited connectivity",
}


class CniPluginError(HutchError):
    """A plugin that exited non-zero (or wrote something that is not a result): its CNI
    error's msg (+ details) and code, naming the plugin, the command and the network."""

    def __init__(self, network: str, plugin: str, command: str, msg: str,
                 code: int | None = None, details: str = ""):
        text = f"{command} failed: {msg}"
        if details and details != msg:
            text += f": {details}"
        if code is not None:
            text += f" (CNI error {code}: {_WELL_KNOWN_CODES[code]})" if code in _WELL_KNOWN_CODES \
                else f" (CNI error {code})"
        HutchError.__init__(self, _one_line(text), where=f"network {network}: plugin {plugin}")
        self.network, self.plugin, self.command = network, plugin, command
        self.msg, self.code, self.details = msg, code, details


# --- versions ------------------------------------------------------------------------

def version_tuple(text) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a semantic version "X.Y.Z", None for anything else."""
    if not isinstance(text, str):
        return None
    parts = text.split(".")
    if len(parts) != 3 or not all(p.isdigit() and p.isascii() for p in parts):
        return None
    return int(parts[0]), int(parts[1]), int(parts[2])


def _at_least(version: str, floor: str) -> bool:
    return (version_tuple(version) or (0, 0, 0)) >= version_tuple(floor)


# --- names (libcni's utils.Validate*, without `re`) ------------------------------------

_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_REST = _NAME_FIRST | frozenset("_.-")


def _valid_name(text) -> bool:
    """libcni's rule for network names and container ids: [a-zA-Z0-9][a-zA-Z0-9_.-]*"""
    return (isinstance(text, str) and bool(text) and text[0] in _NAME_FIRST
            and all(c in _NAME_REST for c in text))


def check_ifname(ifname) -> None:
    """An interface name the kernel takes: 1-15 bytes, not . or .., no / : or space."""
    if (not isinstance(ifname, str) or not ifname or len(ifname.encode()) > 15
            or ifname in (".", "..") or any(c in "/:" or c.isspace() for c in ifname)):
        raise ConfigError(f"invalid interface name {ifname!r} (1-15 characters, no '/', ':' "
                          f"or whitespace)", where="CNI_IFNAME")


def check_container_id(container_id) -> None:
    if not _valid_name(container_id):
        raise ConfigError(f"invalid container id {container_id!r} (letters, digits, '_', '.', "
                          f"'-'; starting with a letter or digit)", where="CNI_CONTAINERID")


# --- configuration lists -----------------------------------------------------------------

class NetworkList:
    """A loaded network configuration list.  `plugins` are the plugin objects as written
    (dicts); `raw` is the whole list (a single-plugin file wrapped as libcni does)."""

    def __init__(self, name: str, cni_version: str, plugins: list[dict], raw: dict,
                 source: str = "", disable_check: bool = False, disable_gc: bool = False):
        self.name, self.cni_version, self.plugins, self.raw = name, cni_version, plugins, raw
        self.source, self.disable_check, self.disable_gc = source, disable_check, disable_gc

    def to_bytes(self) -> bytes:
        return fastjson.dumps(self.raw).encode()

    def __repr__(self) -> str:
        kinds = ",".join(p["type"] for p in self.plugins)
        return f"NetworkList({self.name!r}, {self.cni_version}, [{kinds}], {self.source!r})"


def parse_conflist(data: str | bytes, where: str = "conflist") -> NetworkList:
    """A .conflist document (a JSON object with "plugins") checked and loaded."""
    raw = fastjson.require_object(fastjson.loads(data, where=where), where)
    return _netlist_from_object(raw, where)


def parse_single_conf(data: str | bytes, where: str = "conf") -> NetworkList:
    """A single-plugin .conf/.json document, wrapped as a one-plugin list (libcni's
    ConfListFromConf): the list takes the plugin's name and cniVersion."""
    plugin = fastjson.require_object(fastjson.loads(data, where=where), where)
    _check_plugin(plugin, where, "$")
    raw = {"name": plugin.get("name"), "cniVersion": plugin.get("cniVersion"), "plugins": [plugin]}
    return _netlist_from_object(raw, where, single=True)


def _netlist_from_object(raw: dict, where: str, single: bool = False) -> NetworkList:
    def at(path: str) -> str:
        # a single-plugin file has name and cniVersion at its top level too: same paths
        return f"{where}: $.{path}"

    name = raw.get("name")
    if name is None:
        raise ConfigError("missing network name", where=at("name"))
    if not _valid_name(name):
        raise ConfigError(f"invalid network name {name!r} (letters, digits, '_', '.', '-'; "
                          f"starting with a letter or digit)", where=at("name"))
    version = _list_version(raw, at)
    plugins = raw.get("plugins")
    if plugins is None:
        raise ConfigError("missing plugins (a conflist needs a \"plugins\" array)", where=at("plugins"))
    if not isinstance(plugins, list):
        raise ConfigError(f"plugins must be an array, not {kind(plugins)}", where=at("plugins"))
    if not plugins:
        raise ConfigError("plugins is empty: a network needs at least one plugin", where=at("plugins"))
    if not single:
        for i, plugin in enumerate(plugins):
            _check_plugin(plugin, where, f"$.plugins[{i}]")
    return NetworkList(name, version, plugins, raw, source=where,
                       disable_check=_flag(raw, "disableCheck", at),
                       disable_gc=_flag(raw, "disableGC", at))


def _list_version(raw: dict, at) -> str:
    """cniVersion, or the highest version this runtime speaks among cniVersions (1.1.0)."""
    version = raw.get("cniVersion")
    if version is None and "cniVersions" not in raw:
        raise ConfigError("missing cniVersion", where=at("cniVersion"))
    if version is not None:
        _check_version(version, at("cniVersion"))
    candidates = [version] if version is not None else []
    versions = raw.get("cniVersions")
    if versions is not None:
        if not isinstance(versions, list):
            raise ConfigError(f"cniVersions must be an array, not {kind(versions)}", where=at("cniVersions"))
        for i, v in enumerate(versions):
            if version_tuple(v) is None:
                raise ConfigError(f"{v!r} is not a version (X.Y.Z)", where=at(f"cniVersions[{i}]"))
            if v in SUPPORTED_VERSIONS:
                candidates.append(v)
        if not candidates:
            raise ConfigError(f"no version this runtime supports ({', '.join(SUPPORTED_VERSIONS)})",
                              where=at("cniVersions"))
    return max(candidates, key=version_tuple)


def _check_version(version, where: str) -> None:
    if not isinstance(version, str):
        raise ConfigError(f"cniVersion must be a string, not {kind(version)}", where=where)
    if version_tuple(version) is None:
        raise ConfigError(f"{version!r} is not a version (X.Y.Z)", where=where)
    if version not in SUPPORTED_VERSIONS:
        raise ConfigError(f"unsupported cniVersion {version!r} (supported: "
                          f"{', '.join(SUPPORTED_VERSIONS)})", where=where)


def _check_plugin(plugin, where: str, path: str) -> None:
    if not isinstance(plugin, dict):
        raise ConfigError(f"a plugin must be an object, not {kind(plugin)}", where=f"{where}: {path}")
    ptype = plugin.get("type")
    if ptype is None:
        raise ConfigError("missing plugin type", where=f"{where}: {path}.type")
    if not isinstance(ptype, str) or not ptype or "/" in ptype or ptype in (".", ".."):
        raise ConfigError(f"invalid plugin type {ptype!r} (a file name in the plugin directories)",
                          where=f"{where}: {path}.type")
    caps = plugin.get("capabilities")
    if caps is not None and not (isinstance(caps, dict) and all(isinstance(v, bool) for v in caps.values())):
        raise ConfigError("capabilities must be an object of booleans", where=f"{where}: {path}.capabilities")


def _flag(raw: dict, key: str, at) -> bool:
    """A boolean option; libcni also takes the strings "true"/"false" (any case)."""
    value = raw.get(key, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"{key} must be true or false, not {value!r}", where=at(key))


def _conf_files(directory: str, extensions: tuple[str, ...]) -> list[str]:
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except OSError as err:
        raise ConfigError(f"cannot list: {err.strerror}", where=directory) from None
    paths = [os.path.join(directory, n) for n in names if os.path.splitext(n)[1] in extensions]
    return [p for p in paths if os.path.isfile(p)]


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise ConfigError(f"cannot read: {err.strerror or err}", where=path) from None


def load_conflist(name: str, conf_dirs=DEFAULT_CONF_DIRS) -> NetworkList:
    """The network NAME from the first directory that has it: .conflist files first,
    then .conf/.json single-plugin files, each group sorted by file name.  As in libcni,
    a malformed file met before the match is an error (not silently skipped)."""
    if isinstance(conf_dirs, str):
        conf_dirs = (conf_dirs,)
    for directory in conf_dirs:
        for path in _conf_files(directory, (".conflist",)):
            netlist = parse_conflist(_read(path), where=path)
            if netlist.name == name:
                return netlist
        for path in _conf_files(directory, (".conf", ".json")):
            netlist = parse_single_conf(_read(path), where=path)
            if netlist.name == name:
                return netlist
    raise ConfigError(f"no CNI network named {name!r} in {', '.join(conf_dirs) or '(no directories)'}",
                      where=f"cni:{name}")


# --- results ---------------------------------------------------------------------------

def _copy(value):
    """A deep copy of JSON data (results are small; no `copy` import)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def convert_result(result: dict, to_version: str) -> dict:
    """`result` in spec version `to_version`.  0.3.0 through 1.1.0 share a shape (1.0.0
    dropped ips[].version); 0.1.0/0.2.0 have ip4/ip6 objects instead of ips."""
    result = _copy(result)
    if not _at_least(result.get("cniVersion", "0.1.0"), "0.3.0"):
        result = _legacy_to_current(result)
    if not _at_least(to_version, "0.3.0"):
        result = _current_to_legacy(result)
    elif _at_least(to_version, "1.0.0"):
        for ip in result.get("ips") or ():
            ip.pop("version", None)
    else:
        for ip in result.get("ips") or ():
            ip["version"] = "6" if ":" in str(ip.get("address", "")) else "4"
    result["cniVersion"] = to_version
    return result


def _legacy_to_current(result: dict) -> dict:
    out = {"cniVersion": result.get("cniVersion"), "ips": [], "routes": []}
    for key in ("ip4", "ip6"):
        block = result.get(key)
        if not isinstance(block, dict):
            continue
        ip = {"address": block.get("ip")}
        if block.get("gateway"):
            ip["gateway"] = block["gateway"]
        out["ips"].append(ip)
        out["routes"].extend(block.get("routes") or ())
    if result.get("dns"):
        out["dns"] = result["dns"]
    return out


def _current_to_legacy(result: dict) -> dict:
    out = {"cniVersion": result.get("cniVersion")}
    for ip in result.get("ips") or ():
        key = "ip6" if ":" in str(ip.get("address", "")) else "ip4"
        if key in out:
            continue            # the old format holds one address per family
        block = {"ip": ip.get("address")}
        if ip.get("gateway"):
            block["gateway"] = ip["gateway"]
        routes = [r for r in result.get("routes") or () if (":" in str(r.get("dst", ""))) == (key == "ip6")]
        if routes:
            block["routes"] = routes
        out[key] = block
    if result.get("dns"):
        out["dns"] = result["dns"]
    return out


# --- the runtime --------------------------------------------------------------------------

def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _cni_args(args) -> str:
    """CNI_ARGS: "K1=V1;K2=V2" from a dict or a list of pairs."""
    if not args:
        return ""
    pairs = args.items() if isinstance(args, dict) else args
    return ";".join(f"{k}={v}" for k, v in pairs)


class CniRuntime:
    """Executes a network list's plugins and keeps libcni's result cache in cache_dir."""

    def __init__(self, plugin_dirs=DEFAULT_PLUGIN_DIRS, cache_dir: str = DEFAULT_CACHE_DIR,
                 timeout: float = PLUGIN_TIMEOUT):
        self.plugin_dirs = (plugin_dirs,) if isinstance(plugin_dirs, str) else tuple(plugin_dirs)
        self.cache_dir = cache_dir
        self.timeout = timeout

    # ---- plugins

    def find_plugin(self, plugin: str, network: str | None = None) -> str:
        for directory in self.plugin_dirs:
            path = os.path.join(directory, plugin)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        where = f"network {network}: plugin {plugin}" if network else f"plugin {plugin}"
        raise HutchError(f"CNI plugin {plugin!r} not found in {':'.join(self.plugin_dirs)}", where=where)

    def _exec(self, network: str, plugin: str, command: str, stdin: dict, env: dict) -> dict | None:
        """Run one plugin; its decoded stdout (None when empty) or a CniPluginError."""
        import subprocess
        path = self.find_plugin(plugin, network)
        full_env = dict(os.environ)
        full_env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        full_env.update({"CNI_COMMAND": command, "CNI_PATH": ":".join(self.plugin_dirs)})
        full_env.update(env)
        try:
            proc = subprocess.run([path], input=fastjson.dumps(stdin).encode(), capture_output=True,
                                  env=full_env, cwd="/", timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise CniPluginError(network, plugin, command, f"no answer in {self.timeout:g} s") from None
        except OSError as err:
            raise CniPluginError(network, plugin, command, f"cannot execute {path}: {err.strerror}") from None
        if proc.returncode != 0:
            raise self._failure(network, plugin, command, proc)
        if not proc.stdout.strip():
            return None
        try:
            return fastjson.require_object(fastjson.loads(proc.stdout, where="plugin output"), "plugin output")
        except ConfigError as err:
            raise CniPluginError(network, plugin, command, f"wrote no valid result: {err}") from None

    @staticmethod
    def _failure(network: str, plugin: str, command: str, proc) -> CniPluginError:
        """The spec: a non-zero exit with the error object on stdout.  A plugin that
        writes none (crashed, killed) is described by its stderr and exit status."""
        error = None
        if proc.stdout.strip():
            try:
                error = fastjson.loads(proc.stdout, where="plugin output")
            except ConfigError:
                error = None
        if isinstance(error, dict) and ("msg" in error or "code" in error):
            code = error.get("code")
            return CniPluginError(network, plugin, command, str(error.get("msg") or "(no message)"),
                                  code if isinstance(code, int) and not isinstance(code, bool) else None,
                                  str(error.get("details") or ""))
        status = f"exit status {proc.returncode}" if proc.returncode > 0 else f"killed by signal {-proc.returncode}"
        text = proc.stderr.decode(errors="replace").strip().splitlines()
        return CniPluginError(network, plugin, command, f"{status}" + (f": {text[-1]}" if text else ""))

    def version(self, plugin: str) -> dict:
        """The plugin's VERSION answer: {"cniVersion": ..., "supportedVersions": [...]}."""
        out = self._exec("-", plugin, "VERSION", {"cniVersion": SUPPORTED_VERSIONS[-1]}, {})
        if out is None:
            raise CniPluginError("-", plugin, "VERSION", "wrote nothing")
        if "supportedVersions" not in out:     # a 0.1.0 plugin answers with its version only
            out["supportedVersions"] = ["0.1.0"]
        return out

    # ---- stdin of one call

    @staticmethod
    def _plugin_stdin(netlist: NetworkList, plugin: dict, prev: dict | None, capability_args) -> dict:
        conf = dict(plugin)
        conf["name"] = netlist.name
        conf["cniVersion"] = netlist.cni_version
        conf.pop("prevResult", None)
        if prev is not None:
            conf["prevResult"] = prev
        caps = plugin.get("capabilities") or {}
        runtime_config = {cap: capability_args[cap] for cap, on in caps.items()
                          if on and capability_args and cap in capability_args}
        if runtime_config:
            conf["runtimeConfig"] = runtime_config
        return conf

    @staticmethod
    def _env(container_id: str, netns: str | None, ifname: str, args) -> dict:
        return {"CNI_CONTAINERID": container_id, "CNI_NETNS": netns or "", "CNI_IFNAME": ifname,
                "CNI_ARGS": _cni_args(args)}

    # ---- ADD / DEL / CHECK

    def add(self, netlist: NetworkList, container_id: str, netns: str, ifname: str,
            args=None, capability_args=None) -> dict:
        """ADD every plugin in order; the last result (in the list's version), cached.
        On failure every plugin gets DEL in reverse (the spec's rollback) and no cache
        remains; the error raised is the ADD failure."""
        check_container_id(container_id)
        check_ifname(ifname)
        env = self._env(container_id, netns, ifname, args)
        result = None
        try:
            for plugin in netlist.plugins:
                stdin = self._plugin_stdin(netlist, plugin, result, capability_args)
                out = self._exec(netlist.name, plugin["type"], "ADD", stdin, env)
                if out is None:
                    raise CniPluginError(netlist.name, plugin["type"], "ADD", "returned no result")
                # a result without cniVersion is taken as the version the plugin was asked for
                out.setdefault("cniVersion", netlist.cni_version)
                result = convert_result(out, netlist.cni_version)
            self._cache_write(netlist, container_id, netns, ifname, args, capability_args, result)
        except HutchError as err:
            self._roll_back(netlist, env, result, capability_args, container_id, ifname, err)
            raise
        return result

    def _roll_back(self, netlist, env, result, capability_args, container_id, ifname, err) -> None:
        failures = []
        prev = result if _at_least(netlist.cni_version, "0.4.0") else None
        for plugin in reversed(netlist.plugins):
            stdin = self._plugin_stdin(netlist, plugin, prev, capability_args)
            try:
                self._exec(netlist.name, plugin["type"], "DEL", stdin, env)
            except HutchError as del_err:
                failures.append(str(del_err))
        self._cache_remove(netlist.name, container_id, ifname)
        if failures:
            err.message = f"{err.message}; and DEL after the failed ADD: {failures[0]}"

    def delete(self, netlist: NetworkList, container_id: str, netns: str | None, ifname: str,
               args=None, capability_args=None) -> None:
        """DEL every plugin in reverse order, with the cached result as prevResult (0.4.0+)
        and the cached args when none are given; removes the cache entry afterwards.
        `netns` may be None/"" when the namespace is gone."""
        check_container_id(container_id)
        check_ifname(ifname)
        cached = self.cached(netlist.name, container_id, ifname)
        if cached is not None:
            args = args if args is not None else cached.get("cniArgs")
            capability_args = capability_args if capability_args is not None else cached.get("capabilityArgs")
        prev = None
        if cached is not None and cached.get("result") and _at_least(netlist.cni_version, "0.4.0"):
            prev = convert_result(cached["result"], netlist.cni_version)
        env = self._env(container_id, netns, ifname, args)
        for plugin in reversed(netlist.plugins):
            stdin = self._plugin_stdin(netlist, plugin, prev, capability_args)
            self._exec(netlist.name, plugin["type"], "DEL", stdin, env)
        self._cache_remove(netlist.name, container_id, ifname)

    def check(self, netlist: NetworkList, container_id: str, netns: str, ifname: str,
              args=None, capability_args=None) -> None:
        """CHECK every plugin in order with the cached result (needs cniVersion 0.4.0+;
        nothing to do when the list says disableCheck)."""
        check_container_id(container_id)
        check_ifname(ifname)
        if not _at_least(netlist.cni_version, "0.4.0"):
            raise ConfigError(f"CHECK needs cniVersion 0.4.0 or later, the list has {netlist.cni_version}",
                              where=f"network {netlist.name}")
        if netlist.disable_check:
            return
        cached = self.cached(netlist.name, container_id, ifname)
        if cached is None or not cached.get("result"):
            raise HutchError(f"no cached result for container {container_id} interface {ifname} "
                             f"in {self._results_dir()} (was ADD run?)", where=f"network {netlist.name}")
        if capability_args is None:
            capability_args = cached.get("capabilityArgs")
        prev = convert_result(cached["result"], netlist.cni_version)
        env = self._env(container_id, netns, ifname, args if args is not None else cached.get("cniArgs"))
        for plugin in netlist.plugins:
            stdin = self._plugin_stdin(netlist, plugin, prev, capability_args)
            self._exec(netlist.name, plugin["type"], "CHECK", stdin, env)

    # ---- GC / STATUS

    def gc(self, netlist: NetworkList, valid_attachments=()) -> list[tuple[str, str]]:
        """DEL the cached attachments of this network that are not in valid_attachments
        ((container_id, ifname) pairs or {"containerID", "ifname"} objects); then, for a
        1.1.0 list, GC each plugin with cni.dev/valid-attachments.  Returns the
        attachments deleted.  Nothing at all when the list says disableGC."""
        if netlist.disable_gc:
            return []
        valid = [_attachment_pair(a) for a in valid_attachments]
        deleted, failures = [], []
        for cached in self.cached_attachments():
            pair = (cached["containerId"], cached["ifName"])
            if cached["networkName"] != netlist.name or pair in valid:
                continue
            netns = cached.get("netns") or ""
            try:
                # the namespace of a stale attachment is usually gone: pass it only if it is there
                self.delete(netlist, pair[0], netns if netns and os.path.exists(netns) else None, pair[1])
                deleted.append(pair)
            except HutchError as err:
                failures.append(f"stale attachment {pair[0]} {pair[1]}: {err}")
        if _at_least(netlist.cni_version, "1.1.0"):
            listed = [{"containerID": c, "ifname": i} for c, i in valid]
            for plugin in netlist.plugins:
                stdin = self._plugin_stdin(netlist, plugin, None, None)
                stdin["cni.dev/valid-attachments"] = listed
                try:
                    self._exec(netlist.name, plugin["type"], "GC", stdin, {})
                except HutchError as err:
                    failures.append(str(err))
        if failures:
            raise HutchError(f"GC: {failures[0]}" + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""),
                             where=f"network {netlist.name}")
        return deleted

    def status(self, netlist: NetworkList) -> bool:
        """True when every plugin is ready to ADD (STATUS, 1.1.0 lists); older lists have
        no STATUS and are taken as ready.  A plugin that is not raises CniPluginError
        (code 50: not available, 51: limited connectivity)."""
        if not _at_least(netlist.cni_version, "1.1.0"):
            return True
        for plugin in netlist.plugins:
            self._exec(netlist.name, plugin["type"], "STATUS", self._plugin_stdin(netlist, plugin, None, None), {})
        return True

    # ---- the result cache (libcni's format)

    def _results_dir(self) -> str:
        return os.path.join(self.cache_dir, "results")

    def cache_path(self, network: str, container_id: str, ifname: str) -> str:
        return os.path.join(self._results_dir(), f"{network}-{container_id}-{ifname}")

    def _cache_write(self, netlist, container_id, netns, ifname, args, capability_args, result) -> None:
        entry = {"kind": CACHE_KIND, "containerId": container_id,
                 "config": binascii.b2a_base64(netlist.to_bytes(), newline=False).decode(),
                 "ifName": ifname, "networkName": netlist.name}
        if netns:
            entry["netns"] = netns
        if args:
            entry["cniArgs"] = [[k, v] for k, v in (args.items() if isinstance(args, dict) else args)]
        if capability_args:
            entry["capabilityArgs"] = capability_args
        entry["result"] = result
        path = self.cache_path(netlist.name, container_id, ifname)
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            tmp = f"{path}.tmp{os.getpid()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, fastjson.dumps(entry).encode())
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as err:
            raise HutchError(f"cannot write the CNI result cache: {err.strerror}", where=path) from None

    def _cache_remove(self, network: str, container_id: str, ifname: str) -> None:
        try:
            os.unlink(self.cache_path(network, container_id, ifname))
        except FileNotFoundError:
            pass

    def cached(self, network: str, container_id: str, ifname: str) -> dict | None:
        """The cache entry of one attachment, config decoded to a dict; None if there is none."""
        path = self.cache_path(network, container_id, ifname)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise HutchError(f"cannot read the CNI result cache: {err.strerror}", where=path) from None
        entry = fastjson.require_object(fastjson.loads(data, where=path), path)
        if entry.get("kind") != CACHE_KIND:
            # libcni's legacy cache file is the bare result
            return {"kind": CACHE_KIND, "containerId": container_id, "ifName": ifname,
                    "networkName": network, "result": entry}
        if isinstance(entry.get("config"), str):
            try:
                entry["config"] = fastjson.loads(binascii.a2b_base64(entry["config"]), where=f"{path}: $.config")
            except binascii.Error:
                raise ConfigError("config is not base64", where=f"{path}: $.config") from None
        return entry

    def cached_attachments(self) -> list[dict]:
        """Every readable cniCacheV1 entry in the cache, sorted by file name."""
        try:
            names = sorted(os.listdir(self._results_dir()))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            try:
                with open(os.path.join(self._results_dir(), name), "rb") as f:
                    entry = fastjson.loads(f.read(), where=name)
            except (OSError, ConfigError):
                continue
            if (isinstance(entry, dict) and entry.get("kind") == CACHE_KIND and entry.get("ifName")
                    and entry.get("networkName") and entry.get("containerId")):
                found.append(entry)
        return found


def _attachment_pair(attachment) -> tuple[str, str]:
    if isinstance(attachment, dict):
        return attachment.get("containerID") or attachment.get("containerId"), attachment.get("ifname")
    container_id, ifname = attachment
    return container_id, ifname


# --- the setup step for hutch's containers and its undo --------------------------------------

def cache_dir_of(root: str) -> str:
    """Where hutch keeps the CNI result cache of its containers (inside its network store)."""
    return os.path.join(root, ".net", "cni")


def _netns_identity(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino]


def attach(ctx, netlist_name: str, ifname: str = "eth0", conf_dirs=DEFAULT_CONF_DIRS,
           capability_args=None, *, plugin_dirs=DEFAULT_PLUGIN_DIRS, cache_dir: str | None = None,
           args=None) -> dict:
    """The setup step: ADD the container (ctx.pid's network namespace) to the CNI network.
    The journal entry comes first and holds everything undo needs, the configuration
    itself included (a conflist edited or removed later must not keep undo from
    releasing the lease and the port mappings)."""
    if isinstance(conf_dirs, str):
        conf_dirs = (conf_dirs,)
    netlist = load_conflist(netlist_name, conf_dirs)
    runtime = CniRuntime(plugin_dirs=plugin_dirs, cache_dir=cache_dir or cache_dir_of(ctx.root))
    for plugin in netlist.plugins:
        runtime.find_plugin(plugin["type"], netlist.name)    # a missing one: before anything is made
    netns = f"/proc/{ctx.pid}/ns/net"
    cache_dir = cache_dir or cache_dir_of(ctx.root)
    ctx.own({"kind": "cni", "key": f"cni:{netlist.name}:{ifname}", "network": netlist.name,
             "conf": netlist.raw, "conf_file": netlist.source, "conf_dirs": list(conf_dirs),
             "container_id": ctx.state.id, "ifname": ifname, "cache_dir": cache_dir,
             "plugin_dirs": list(plugin_dirs), "netns": netns,
             # which namespace that path named: after a crash the pid may be someone else's
             "netns_id": _netns_identity(netns),
             "args": [[k, v] for k, v in (args.items() if isinstance(args, dict) else args or ())],
             "capability_args": capability_args or {}})
    return runtime.add(netlist, ctx.state.id, netns, ifname, args=args, capability_args=capability_args)


def _still_same_netns(entry: dict) -> str | None:
    """The netns path when it still names the namespace the ADD used, else None.  After a
    crash /proc/PID can be another process: DEL into its namespace would delete that
    process's interface of the same name."""
    path = entry.get("netns")
    if not path:
        return None
    identity = _netns_identity(path)
    return path if identity is not None and identity == entry.get("netns_id") else None


def _is_not_found(err: HutchError) -> bool:
    """A plugin's DEL answer meaning "nothing of this attachment is left" (a missing
    plugin binary is not one of them)."""
    if not isinstance(err, CniPluginError):
        return False
    if err.code == ERR_UNKNOWN_CONTAINER:
        return True
    text = f"{err.msg} {err.details}".lower()
    return any(words in text for words in ("not found", "no such", "does not exist"))


def undo(entry: dict) -> None:
    """DEL the attachment an `attach` entry names; idempotent.  With the cache (ADD
    finished) DEL gets its result; without (crash mid-ADD, or already undone) DEL runs
    with the saved configuration anyway, so IPAM leases and port mappings still go,
    and "not found" answers count as done."""
    runtime = CniRuntime(plugin_dirs=entry.get("plugin_dirs") or DEFAULT_PLUGIN_DIRS,
                         cache_dir=entry.get("cache_dir") or DEFAULT_CACHE_DIR)
    container_id, ifname, name = entry["container_id"], entry["ifname"], entry["network"]
    try:
        cached = runtime.cached(name, container_id, ifname)
        raw = (cached or {}).get("config") if isinstance((cached or {}).get("config"), dict) else None
        netlist = _netlist_from_object(_copy(raw or entry["conf"]), where=f"cni:{name}")
        args = entry.get("args") or None
        caps = entry.get("capability_args") or None
        try:
            runtime.delete(netlist, container_id, _still_same_netns(entry), ifname,
                           args=args, capability_args=caps)
        except HutchError as err:
            if cached is not None or not _is_not_found(err):
                raise
            runtime._cache_remove(name, container_id, ifname)
    except HutchError as err:
        raise HutchError(f"CNI DEL of container {container_id} interface {ifname}: {err}",
                         where=f"cni:{name}") from None
