"""`hutch ns ls`: lsns's columns, table, JSON and trees over hutch.ns rows.

Pure formatting: it takes :class:`hutch.ns.info.Namespace` rows and returns
text, so it is tested without root.  The JSON has util-linux's shape
(``{"namespaces": [...]}``, lower-case column names as keys, numbers as
numbers, missing values as null, ``"children"`` in trees).
"""

from __future__ import annotations

from hutch.record import dataclass

from hutch.errors import ConfigError


@dataclass(frozen=True)
class Column:
    name: str
    right: bool          # right-aligned in the table (lsns's SCOLS_FL_RIGHT)
    number: bool         # a JSON number (SCOLS_JSON_NUMBER)
    help: str
    hint: int = 0        # lsns's width hint (libsmartcols whint), see text_table


COLUMNS = {c.name: c for c in (
    Column("NS", True, True, "namespace identifier (inode number)", 10),
    Column("TYPE", False, False, "kind of namespace", 5),
    Column("PATH", False, False, "path to the namespace"),
    Column("NPROCS", True, True, "number of processes in the namespace", 5),
    Column("PID", True, True, "lowest PID in the namespace", 5),
    Column("PPID", True, True, "PPID of the PID", 5),
    Column("COMMAND", False, False, "command line of the PID"),
    Column("UID", True, True, "UID of the PID"),
    Column("USER", False, False, "username of the PID"),
    Column("NETNSID", True, False, "namespace ID as used by network subsystem"),
    Column("NSFS", False, False, "nsfs mountpoint (usually used network subsystem)"),
    Column("PNS", True, True, "parent namespace identifier (inode number)", 10),
    Column("ONS", True, True, "owner namespace identifier (inode number)", 10),
    Column("CONTAINER", False, False, "hutch containers whose init is in the namespace"),
)}
TREES = ("owner", "parent", "process")


def default_columns(types: list[str] | None) -> list[str]:
    """lsns's default columns (NETNSID and NSFS when listing net), plus CONTAINER."""
    columns = ["NS", "TYPE", "NPROCS", "PID", "USER"]
    if types and "net" in types:
        columns += ["NETNSID", "NSFS"]
    return columns + ["CONTAINER", "COMMAND"]


def list_options(columns: list[str], tree: str | None) -> dict:
    """The switches of hutch.ns.list_namespaces that these columns and tree need
    (each one off saves a syscall or a file read per namespace)."""
    need = set(columns)
    return {"related": tree in ("owner", "parent") or bool(need & {"PNS", "ONS"}),
            "netnsid": "NETNSID" in need, "commands": "COMMAND" in need,
            "users": bool(need & {"USER", "UID"})}


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
#
# lsns adds its lines to a libsmartcols table one namespace at a time, each under
# the line of its parent (the relation of the tree), and the table is printed as a
# tree only when it has a tree column: COMMAND for --tree=process, NS for owner and
# parent.  Without that column the same lines come out flat, in the order they
# were added.  lines() replays that order; nest() builds the tree from it.

TREE_COLUMN = {"process": "COMMAND", "owner": "NS", "parent": "NS"}


def is_nested(columns: list[str], tree: str | None) -> bool:
    """True if lsns prints a tree: a relation and its tree column among the columns."""
    return bool(tree) and TREE_COLUMN[tree] in columns


def lines(rows: list, relation: str | None) -> list[tuple[object, object]]:
    """[(row, parent row or None)] in the order lsns adds its lines (rows sorted by inode)."""
    if not relation:
        return [(row, None) for row in rows]
    if relation == "process":
        return _process_lines(rows)
    return _relation_lines(rows, relation)


def _process_lines(rows: list) -> list[tuple[object, object]]:
    """lsns's default tree: a row goes under the row most recently added for the
    parent process of its (lowest-pid) process.  A process's latest row replaces
    its earlier ones, exactly as lsns's proc->outline does."""
    latest_by_pid: dict[int, object] = {}
    out = []
    for row in rows:
        parent = latest_by_pid.get(row.ppid) if row.pid is not None else None
        out.append((row, parent))
        if row.pid is not None:
            latest_by_pid[row.pid] = row
    return out


def _relation_lines(rows: list, relation: str) -> list[tuple[object, object]]:
    """lsns's show_namespace(): before a row, the row it hangs under is added (for
    --tree=parent, a row without a parent first has its owner added, which only
    changes the order); a row hangs under its owner (ONS) or parent (PNS)."""
    listed = {row.ns: row for row in rows}
    added: set[int] = set()
    out: list[tuple[object, object]] = []

    def relative(ino: int, row):
        return listed.get(ino) if ino and ino != row.ns else None

    def show(row) -> None:
        added.add(row.ns)
        first = relative(row.ons, row) if relation == "owner" else (
            relative(row.pns, row) if row.pns else relative(row.ons, row))
        if first is not None and first.ns not in added:
            show(first)
        out.append((row, relative(row.ons if relation == "owner" else row.pns, row)))

    for row in rows:
        if row.ns not in added:
            show(row)
    return out


def nest(pairs: list[tuple[object, object]]) -> list[tuple[object, list]]:
    """[(row, children)] trees from lines(): children in the order they were added."""
    nodes = {id(row): (row, []) for row, _ in pairs}
    roots = []
    for row, parent in pairs:
        (nodes[id(parent)][1] if parent is not None else roots).append(nodes[id(row)])
    return roots


def build_forest(rows: list, relation: str) -> list[tuple[object, list]]:
    """[(row, children)] trees as lsns nests them for relation (owner, parent, process)."""
    return nest(lines(rows, relation))


def tree_parents(rows: list, relation: str) -> dict[int, int]:
    """inode -> inode of the row it hangs under, for rows whose relative is listed too."""
    return {row.ns: parent.ns for row, parent in lines(rows, relation) if parent is not None}


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

def _json_string(text: str) -> str:
    """A JSON string as libsmartcols writes it: quote and backslash escaped, control
    characters as \\b \\t \\n \\f \\r or \\u00XX, everything else (UTF-8) as is."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return '"' + text.translate(_JSON_ESCAPES) + '"'


_JSON_ESCAPES = {c: f"\\u{c:04x}" for c in range(0x20)}
_JSON_ESCAPES.update({ord("\b"): "\\b", ord("\t"): "\\t", ord("\n"): "\\n",
                      ord("\f"): "\\f", ord("\r"): "\\r", ord('"'): '\\"', ord("\\"): "\\\\"})


def _json_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    return _json_string(value)


def _json_objects(out: list[str], nodes: list, columns: list[str], indent: int) -> None:
    """Objects of nodes [(row, children)] in libsmartcols' layout: '},{' between them."""
    pad = " " * indent
    field_pad = pad + "   "
    keys = [f'{field_pad}"{c.lower()}": ' for c in columns]
    for index, (row, children) in enumerate(nodes):
        out.append(f"{pad}{{\n" if index == 0 else f"{pad}}},{{\n")
        out.append(",\n".join(key + _json_value(cell(row, c)) for key, c in zip(keys, columns)))
        if children:
            out.append(f',\n{field_pad}"children": [\n')
            _json_objects(out, children, columns, indent + 6)
            out.append(f"{field_pad}]\n")
        else:
            out.append("\n")
    if nodes:
        out.append(f"{pad}}}\n")


def to_json(rows: list, columns: list[str], tree: str | None = None) -> str:
    """lsns -J, byte for byte as libsmartcols prints it: {"namespaces": [...]} with
    "children" only where lsns draws a tree (see is_nested)."""
    pairs = lines(rows, tree)
    nodes = nest(pairs) if is_nested(columns, tree) else [(row, []) for row, _ in pairs]
    out = ['{\n   "namespaces": [\n']
    _json_objects(out, nodes, columns, 6)
    out.append("   ]\n}\n")
    return "".join(out)


def to_table(rows: list, columns: list[str], tree: str | None = None,
             headings: bool = True, nsfs_separator: str = ",") -> str:
    """The text table: one space between columns, numbers right-aligned, the tree
    art (left-aligned) in COMMAND for a process tree and in NS for the others."""
    # lsns draws a process tree in COMMAND, an owner/parent tree in NS; without that
    # column its lines come out flat, in the order they were added
    if is_nested(columns, tree):
        tree_column = TREE_COLUMN[tree]
        shown = list(walk_forest(nest(lines(rows, tree))))
    else:
        tree_column = None
        shown = [("", row) for row, _ in lines(rows, tree)]
    table = []
    for prefix, row in shown:
        cells = []
        for column in columns:
            value = cell(row, column, nsfs_separator)
            text = "" if value is None else str(value)
            if column == tree_column:
                text = prefix + text
            cells.append(text)
        table.append(cells)
    widths = [_width(name, [r[i] for r in table]) for i, name in enumerate(columns)]
    if headings:
        table.insert(0, list(columns))
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


def _width(column: str, texts: list[str]) -> int:
    """A column's width as libsmartcols computes it for lsns 2.38: the widest cell, at
    least the heading (also with -n, where it is not printed); and when the cells are
    not narrower than the heading, at least the column's width hint -- so PID is 5 wide
    with 4-digit pids, 3 (its heading) when every pid is 1 digit."""
    data = max((len(t) for t in texts), default=0)
    heading = len(column)
    if data < heading:
        return heading
    return max(data, COLUMNS[column].hint)


def columns_help() -> str:
    return "".join(f"{c.name:>10}  {c.help}\n" for c in COLUMNS.values())
