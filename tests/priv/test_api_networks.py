"""The Python API for networks: hutch.networks and Container(net=..., publish=...),
over the same store and setup step as the CLI; checked with real traffic to 127.0.0.1
and with ip/nft for what is left."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

import hutch
from hutch.errors import HutchError
from helpers.net import SERVER, tcp_from_host

pytestmark = [pytest.mark.priv]


@pytest.fixture
def root(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    path = str(tmp_path / "root")
    yield path
    for n in hutch.networks.list(root=path):
        hutch.networks.remove(n["name"], root=path)
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout)
    assert not [l["ifname"] for l in links if l.get("ifalias", "").endswith(" " + path)]


def test_networks_from_python_and_a_published_port(root):
    made = hutch.networks.create("lab", subnet="10.247.3.0/24", root=root)
    assert made["subnets"] == [{"subnet": "10.247.3.0/24", "gateway": "10.247.3.1"}]
    assert [n["name"] for n in hutch.networks.list(root=root)] == ["lab"]
    r, w = os.pipe()
    with hutch.Container(["python3", "-u", "-c", SERVER, "api", "80"], root=root, name="api",
                         net="lab", publish=["18390:80"], stdout=w) as box:
        box.start()
        os.close(w)
        with os.fdopen(r) as out:
            assert out.readline().strip() == "ready"
            ends = hutch.networks.endpoints("api", root=root)
            assert list(ends) == ["lab"] and ends["lab"]["ips"][0].startswith("10.247.3.")
            assert ends["lab"]["ports"][0]["host_port"] == 18390
            assert tcp_from_host("127.0.0.1", 18390).startswith("api ")
            with pytest.raises(HutchError, match="in use by container"):
                hutch.networks.remove("lab", root=root)
            box.kill()
            box.wait()
    assert hutch.networks.inspect("lab", root=root)["containers"] == {}
    result = hutch.run(["cat", "/etc/hosts"], root=root, net="lab", name="second", capture_output=True)
    assert b"\tsecond" in result.stdout
    hutch.networks.remove("lab", root=root)
    assert hutch.networks.list(root=root) == []
