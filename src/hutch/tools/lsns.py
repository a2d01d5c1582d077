"""`hutch ns ls`: lsns's columns, table, JSON and trees over hutch.ns rows.

Pure formatting: it takes :class:`hutch.ns.info.Namespace` rows and returns
text, so it is tested without root.  The JSON has util-linux's shape
(``{"namespaces": [...]}``, lower-case column names as keys, numbers as
numbers, missing values as null, ``"children"`` in trees).
"""

from __future__ import annotations

import json
from hutch.record import dataclass

from hutch.errors import ConfigError


@dataclass(frozen=True)
class Column:
    name: str
    right: bool          # right-aligned in the table (lsns's SCOLS_FL_RIGHT)
    number: bool         # a JSON number (SCOLS_JSON_NUMBER)
    help: str


COLUMNS = {c.name: c for c in (
    Column("NS", True, True, "namespace identifier (inode number)"),
    Column("TYPE", False, False, "kind of namespace"),
    Column("PATH", False, False, "path to the namespace"),
    Column("NPROCS", True, True, "number of processes in the namespace"),
    Column("PID", True, True, "lowest PID in the namespace"),
    Column("PPID", True, True, "PPID of the PID"),
    Column("COMMAND", False, False, "command line of the PID"),
    Column("UID", True, True, "UID of the PID"),
    Column("USER", False, False, "username of the PID"),
    Column("NETNSID", True, False, "namespace ID as used by network subsystem"),
    Column("NSFS", False, False, "nsfs mountpoint (usually used network subsystem)"),
    Column("PNS", True, True, "parent namespace identifier (inode number)"),
    Column("ONS", True, True, "owner namespace identifier (inode number)"),
    Column("CONTAINER", False, False, "hutch containers whose init is in the namespace"),
)}
TREES = ("owner", "parent", "process")


def default_columns(types: list[str] | None) -> list[str]:
    """lsns's default columns (NETNSID and NSFS when listing net), plus CONTAINER."""
    columns = ["NS", "TYPE", "NPROCS", "PID", "USER"]
    if types and "net" in types:
        columns += ["NETNSID", "NSFS"]
    return columns + ["CONTAINER", "COMMAND"]


def parse_columns(spec: str | None, defaults: list[str]) -> list[str]:
    """-o LIST: comma-separated names (any case); a leading '+' appends to the defaults."""
    if not spec:
        return list(defaults)
    columns = list(defaults) if spec.startswith("+") else []
    for name in spec.lstrip("+").split(","):
        upper = name.strip().upper()
        if upper not in COLUMNS:
            raise ConfigError(f"unknown column: {name.strip()!r} (columns: {', '.join(COLUMNS)})",
                              where="--output")
        columns.append(upper)
    return columns


def cell(row, column: str, nsfs_separator: str = "\n"):
    """The value of one column for one row: int, str or None."""
    if column == "NSFS":
        return nsfs_separator.join(row.nsfs) or None
    if column == "CONTAINER":
        return row.container
    if column == "PATH":
        return row.path
    if column in ("PNS", "ONS"):
        return getattr(row, column.lower())
    if column == "NETNSID":
        return row.netnsid if row.type == "net" else None
    return getattr(row, column.lower())


# --- trees ----------------------------------------------------------------------------

def tree_parents(rows: list, relation: str) -> dict[int, int]:
    """inode -> inode of the row it hangs under, for rows whose relative is listed too."""
    listed = {row.ns for row in rows}
    out = {}
    for row in rows:
        relative = row.ons if relation == "owner" else row.pns
        if relative and relative in listed and relative != row.ns:
            out[row.ns] = relative
    return out


def build_forest(rows: list, relation: str) -> list[tuple[object, list]]:
    """[(row, children)] trees in inode order; children are the same pairs."""
    if relation == "process":
        return _process_forest(rows)
    parents = tree_parents(rows, relation)
    nodes = {row.ns: (row, []) for row in rows}
    roots = []
    for row in rows:            # rows are sorted by inode, so children stay sorted too
        parent = parents.get(row.ns)
        (nodes[parent][1] if parent else roots).append(nodes[row.ns])
    return roots


def _process_forest(rows: list) -> list[tuple[object, list]]:
    """lsns's default tree: a row goes under the row most recently shown for the
    parent process of its (lowest-pid) process.  Rows are visited in inode order
    and a process's latest row replaces its earlier ones, exactly as lsns's
    proc->outline does, so both tools nest the same rows the same way."""
    latest_by_pid: dict[int, tuple] = {}
    roots: list = []
    for row in rows:
        node = (row, [])
        parent = latest_by_pid.get(row.ppid) if row.pid is not None else None
        (parent[1] if parent is not None else roots).append(node)
        if row.pid is not None:
            latest_by_pid[row.pid] = node
    return roots


def walk_forest(forest: list):
    """(tree prefix, row) in display order, with libsmartcols' ├─ └─ │ art; top-level
    rows have no prefix, as in lsns."""
    for row, children in forest:
        yield "", row
        yield from _walk_children(children, "")


def _walk_children(children: list, prefix: str):
    for index, (row, grand) in enumerate(children):
        last = index == len(children) - 1
        yield prefix + ("└─" if last else "├─"), row
        yield from _walk_children(grand, prefix + ("  " if last else "│ "))


# --- output ---------------------------------------------------------------------------

def to_json(rows: list, columns: list[str], tree: str | None = None) -> str:
    """lsns -J: {"namespaces": [{column: value, ...}, ...]}, nested under "children"."""
    def obj(row) -> dict:
        return {c.lower(): cell(row, c) for c in columns}

    if tree:
        def nest(forest) -> list:
            out = []
            for row, children in forest:
                item = obj(row)
                if children:
                    item["children"] = nest(children)
                out.append(item)
            return out
        items = nest(build_forest(rows, tree))
    else:
        items = [obj(row) for row in rows]
    return json.dumps({"namespaces": items}, indent=3, ensure_ascii=False) + "\n"


def to_table(rows: list, columns: list[str], tree: str | None = None,
             headings: bool = True, nsfs_separator: str = ",") -> str:
    """The text table: one space between columns, numbers right-aligned, the tree
    art (left-aligned) in COMMAND for a process tree and in NS for the others."""
    # lsns draws a process tree in COMMAND, an owner/parent tree in NS
    tree_column = None if not tree else ("COMMAND" if tree == "process" else "NS")
    if tree:
        lines = list(walk_forest(build_forest(rows, tree)))
    else:
        lines = [("", row) for row in rows]
    table = []
    for prefix, row in lines:
        cells = []
        for column in columns:
            value = cell(row, column, nsfs_separator)
            text = "" if value is None else str(value)
            if column == tree_column:
                text = prefix + text
            cells.append(text)
        table.append(cells)
    if headings:
        table.insert(0, list(columns))
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))] if table else []
    out = []
    for cells in table:
        parts = []
        for i, (column, text) in enumerate(zip(columns, cells)):
            right = COLUMNS[column].right and column != tree_column
            last = i == len(columns) - 1
            if right:
                parts.append(text.rjust(widths[i]))
            else:
                parts.append(text if last else text.ljust(widths[i]))
        out.append(" ".join(parts).rstrip() + "\n")
    return "".join(out)


def columns_help() -> str:
    return "".join(f"{c.name:>10}  {c.help}\n" for c in COLUMNS.values())
