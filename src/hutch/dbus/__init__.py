"""A D-Bus client from the standard library alone: the wire format and a connection.

Used by the systemd cgroup driver (StartTransientUnit and friends); kept out of the
syscall package because it is a protocol, not a system call binding."""

from hutch.dbus.client import *  # noqa: F401,F403
from hutch.dbus.client import Connection, DBusError, DBusTimeoutError, Message, Variant  # noqa: F401
