"""linux.memoryPolicy parsing: the mode word and nodemask set_mempolicy(2) gets."""

import pytest

from hutch.errors import ConfigError
from hutch.security.process import parse_memory_policy, parse_node_list


def test_node_list_ranges_and_singles():
    assert parse_node_list("0-2,5", "n") == {0, 1, 2, 5}
    assert parse_node_list(" 3 ", "n") == {3}
    assert parse_node_list("", "n") == frozenset()


@pytest.mark.parametrize("text", ["a", "1-", "-1", "2-1", "1,,2", "99999"])
def test_bad_node_lists(text):
    with pytest.raises(ConfigError) as err:
        parse_node_list(text, "linux.memoryPolicy.nodes")
    assert err.value.where == "linux.memoryPolicy.nodes"


def test_mode_word_carries_the_flags():
    p = parse_memory_policy({"mode": "MPOL_BIND", "nodes": "0,2",
                             "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_NUMA_BALANCING"]})
    assert p.mode == 2 | 1 << 15 | 1 << 13 and p.nodes == {0, 2}
    assert parse_memory_policy({"mode": "MPOL_PREFERRED"}).nodes == frozenset()
    assert parse_memory_policy(None) is None
