"""Kernel constants hutch needs, in one place (values from the Linux UAPI headers)."""

# clone / unshare / setns flags
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# The namespace vocabulary: every name hutch uses for a namespace type derives from
# this table.  One row per type, in setns join order: the user namespace first (it
# owns the others: joined first, it gives us the rights to join them), mount last
# (it changes our root and cwd, so every other path is opened and joined before).
#   OCI type   clone flag       /proc/PID/ns file  nsenter option  nsenter long option
# The /proc file name is also lsns's -t name and hutch ns's canonical name.
NAMESPACES = (
    ("user",    CLONE_NEWUSER,   "user",   "U", "user"),
    ("cgroup",  CLONE_NEWCGROUP, "cgroup", "C", "cgroup"),
    ("ipc",     CLONE_NEWIPC,    "ipc",    "i", "ipc"),
    ("uts",     CLONE_NEWUTS,    "uts",    "u", "uts"),
    ("network", CLONE_NEWNET,    "net",    "n", "net"),
    ("pid",     CLONE_NEWPID,    "pid",    "p", "pid"),
    ("time",    CLONE_NEWTIME,   "time",   "T", "time"),
    ("mount",   CLONE_NEWNS,     "mnt",    "m", "mount"),
)
# Derived views, in join order.  OCI type -> clone flag / -> /proc/PID/ns file name.
NAMESPACE_FLAGS = {oci: flag for oci, flag, _proc, _opt, _long in NAMESPACES}
NAMESPACE_PROC_NAMES = {oci: proc for oci, _flag, proc, _opt, _long in NAMESPACES}
NAMESPACE_JOIN_ORDER = tuple(NAMESPACE_FLAGS)          # OCI names, user first, mount last

# setrlimit(2)/prlimit(2) resources by their OCI process.rlimits name (asm-generic/resource.h,
# x86_64 and aarch64 alike): what config validation, `hutch run --ulimit` and the
# container init accept, all from this one table.
RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}

# mount(2) flags
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_POSIXACL = 1 << 16
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

# prctl(2)
PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# openat2(2) resolve flags
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# close_range(2)
CLOSE_RANGE_CLOEXEC = 1 << 2

# ioctl on nsfs files
NS_GET_USERNS = 0xB701
NS_GET_PARENT = 0xB702
NS_GET_NSTYPE = 0xB703
NS_GET_OWNER_UID = 0xB704

# ioctl on ttys
TIOCSCTTY = 0x540E
TIOCGWINSZ = 0x5413
TIOCSWINSZ = 0x5414
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441
