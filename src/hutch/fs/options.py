"""OCI mount options -> mount(2) flags, propagation, recursive attributes and data.

Pure logic (no syscalls), the same vocabulary and the same rules as runc 1.1.5: a word
that is not a flag, propagation, recursive-attribute or extension word is filesystem data
(``mode=755``, ``size=64k``, ``a,b`` as one entry...).  The kernel ignores data on a bind
mount, and so does runc: such words are accepted there and have no effect.  An empty word
is nothing.  ``idmap``/``ridmap`` make an idmapped bind (hutch.fs.idmapped; runc 1.1.5
ignores them).  Refused, where runc 1.1.5 would silently ignore it on a bind and leave the
mount other than asked: a comma-joined entry holding flag words (``"ro,nosuid"`` would
give a writable bind).  Anything else the filesystem refuses fails at mount time, as in runc.
"""

from __future__ import annotations

from hutch.record import dataclass, field

from hutch.errors import ConfigError
from hutch.syscall.constants import (
    MS_BIND, MS_DIRSYNC, MS_LAZYTIME, MS_MANDLOCK, MS_NOATIME, MS_NODEV, MS_NODIRATIME,
    MS_NOEXEC, MS_NOSUID, MS_NOSYMFOLLOW, MS_POSIXACL, MS_PRIVATE, MS_RDONLY, MS_REC,
    MS_RELATIME, MS_REMOUNT, MS_SHARED, MS_SILENT, MS_SLAVE, MS_STRICTATIME, MS_SYNCHRONOUS,
    MS_UNBINDABLE,
)
from hutch.syscall.mountapi import (
    MOUNT_ATTR__ATIME, MOUNT_ATTR_NOATIME, MOUNT_ATTR_NODEV, MOUNT_ATTR_NODIRATIME,
    MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NOSYMFOLLOW, MOUNT_ATTR_RDONLY,
    MOUNT_ATTR_RELATIME, MOUNT_ATTR_STRICTATIME,
)

MS_I_VERSION = 1 << 23

# word -> (clear?, flag).  "clear" words remove a flag an earlier word set.
FLAG_WORDS: dict[str, tuple[bool, int]] = {
    "acl": (False, MS_POSIXACL), "noacl": (True, MS_POSIXACL),
    "async": (True, MS_SYNCHRONOUS), "sync": (False, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME), "noatime": (False, MS_NOATIME),
    "bind": (False, MS_BIND), "rbind": (False, MS_BIND | MS_REC),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV), "nodev": (False, MS_NODEV),
    "diratime": (True, MS_NODIRATIME), "nodiratime": (False, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC), "noexec": (False, MS_NOEXEC),
    "iversion": (False, MS_I_VERSION), "noiversion": (True, MS_I_VERSION),
    "lazytime": (False, MS_LAZYTIME), "nolazytime": (True, MS_LAZYTIME),
    "loud": (True, MS_SILENT), "silent": (False, MS_SILENT),
    "mand": (False, MS_MANDLOCK), "nomand": (True, MS_MANDLOCK),
    "relatime": (False, MS_RELATIME), "norelatime": (True, MS_RELATIME),
    "strictatime": (False, MS_STRICTATIME), "nostrictatime": (True, MS_STRICTATIME),
    "nosymfollow": (False, MS_NOSYMFOLLOW), "symfollow": (True, MS_NOSYMFOLLOW),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY), "rw": (True, MS_RDONLY),
    "suid": (True, MS_NOSUID), "nosuid": (False, MS_NOSUID),
}

PROPAGATION_WORDS: dict[str, int] = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}

# Recursive attributes applied with mount_setattr(AT_RECURSIVE): word -> (clear?, attr).
RECURSIVE_WORDS: dict[str, tuple[bool, int]] = {
    "rro": (False, MOUNT_ATTR_RDONLY), "rrw": (True, MOUNT_ATTR_RDONLY),
    "rnosuid": (False, MOUNT_ATTR_NOSUID), "rsuid": (True, MOUNT_ATTR_NOSUID),
    "rnodev": (False, MOUNT_ATTR_NODEV), "rdev": (True, MOUNT_ATTR_NODEV),
    "rnoexec": (False, MOUNT_ATTR_NOEXEC), "rexec": (True, MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, MOUNT_ATTR_NODIRATIME), "rdiratime": (True, MOUNT_ATTR_NODIRATIME),
    "rnosymfollow": (False, MOUNT_ATTR_NOSYMFOLLOW), "rsymfollow": (True, MOUNT_ATTR_NOSYMFOLLOW),
}
# The atime words replace the whole atime field (MOUNT_ATTR__ATIME) when set.
RECURSIVE_ATIME_WORDS: dict[str, int] = {
    "rrelatime": MOUNT_ATTR_RELATIME, "rnoatime": MOUNT_ATTR_NOATIME,
    "rstrictatime": MOUNT_ATTR_STRICTATIME,
}
RECURSIVE_ATIME_CLEAR_WORDS = {"rnorelatime", "ratime", "rnostrictatime"}

# Extensions runc understands.
# idmap/ridmap: an idmapped bind (see hutch.fs.idmapped), ridmap over every mount of an rbind.
EXTENSION_WORDS = {"tmpcopyup", "idmap", "ridmap"}



@dataclass
class MountOptions:
    """The parsed options of one OCI mount entry."""

    flags: int = 0
    propagation: list[int] = field(default_factory=list)
    attr_set: int = 0
    attr_clr: int = 0
    data: list[str] = field(default_factory=list)
    extensions: set[str] = field(default_factory=set)

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & MS_BIND)

    @property
    def recursive(self) -> bool:
        return bool(self.flags & MS_REC)

    @property
    def readonly(self) -> bool:
        return bool(self.flags & MS_RDONLY)

    @property
    def data_string(self) -> str | None:
        return ",".join(self.data) if self.data else None

    @property
    def has_recursive_attrs(self) -> bool:
        return bool(self.attr_set or self.attr_clr)


def parse_options(options: object, where: str, *, bind_type: bool = False) -> MountOptions:
    """Parse a mount's ``options`` list; `where` is its JSON path (``mounts[3]``).

    `bind_type` is True when the entry's type is "bind" (a bind word in the options
    counts too): its data words are accepted and have no effect, as in the kernel.
    """
    result = MountOptions()
    if options is None:
        return result
    if not isinstance(options, list):
        raise ConfigError("must be a list of strings", where=f"{where}.options")
    words = []
    for i, word in enumerate(options):
        opt_where = f"{where}.options[{i}]"
        if not isinstance(word, str):
            raise ConfigError("must be a string", where=opt_where)
        if "\0" in word:
            raise ConfigError(f"invalid mount option {word!r} (NUL byte)", where=opt_where)
        if word:   # runc: an empty word adds nothing
            words.append((word, opt_where))
    is_bind = bind_type or any(w in ("bind", "rbind") for w, _ in words)
    for word, opt_where in words:
        _apply_word(result, word, opt_where, is_bind)
    return result


def _apply_word(result: MountOptions, word: str, where: str, is_bind: bool) -> None:
    if word in FLAG_WORDS:
        clear, flag = FLAG_WORDS[word]
        if clear:
            result.flags &= ~flag
        else:
            result.flags |= flag
    elif word in PROPAGATION_WORDS:
        result.propagation.append(PROPAGATION_WORDS[word])
    elif word in RECURSIVE_WORDS:
        clear, attr = RECURSIVE_WORDS[word]
        if clear:
            result.attr_clr |= attr
            result.attr_set &= ~attr
        else:
            result.attr_set |= attr
            result.attr_clr &= ~attr
    elif word in RECURSIVE_ATIME_WORDS:
        # Setting an atime mode means: clear the atime field, then set this value.
        result.attr_clr |= MOUNT_ATTR__ATIME
        result.attr_set = (result.attr_set & ~MOUNT_ATTR__ATIME) | RECURSIVE_ATIME_WORDS[word]
    elif word in RECURSIVE_ATIME_CLEAR_WORDS:
        result.attr_clr |= MOUNT_ATTR__ATIME
        result.attr_set &= ~MOUNT_ATTR__ATIME
    elif word in EXTENSION_WORDS:
        result.extensions.add(word)
    else:
        if is_bind and "," in word:
            _refuse_hidden_flag_words(word, where)
        result.data.append(word)


def _refuse_hidden_flag_words(word: str, where: str) -> None:
    """On a bind, ``"ro,nosuid"`` in one entry is data, which the kernel ignores: runc would
    mount it writable.  Refuse rather than give a mount other than the one asked for."""
    hidden = [w for w in word.split(",") if w in FLAG_WORDS or w in PROPAGATION_WORDS
              or w in RECURSIVE_WORDS or w in RECURSIVE_ATIME_WORDS or w in EXTENSION_WORDS]
    if hidden:
        raise ConfigError(f"mount option {word!r} holds {', '.join(hidden)}: give one option per entry "
                          "(a bind mount ignores it as data)", where=where)


def propagation_flag(value: object, where: str) -> int:
    """linux.rootfsPropagation (``private``, ``rslave``...) -> mount(2) flags."""
    if not isinstance(value, str) or value not in PROPAGATION_WORDS:
        raise ConfigError(f"invalid propagation {value!r} (one of {', '.join(PROPAGATION_WORDS)})",
                          where=where)
    return PROPAGATION_WORDS[value]
