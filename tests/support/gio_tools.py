#!/usr/bin/python3
"""corrald as GNOME tools see it, through GLib's own D-Bus code (Gio), on the bus whose
address is argv[1]. Prints one JSON document on stdout:

  "walk":    d-feet's walk: Introspect "/", parse the XML with Gio.DBusNodeInfo, and
             Introspect every child node it names, recursively; each node's path maps to
             the interfaces its own XML declares.
  "managed": what a GDBusObjectManagerClient on /org/corral/Corral1 holds after its
             GetManagedObjects: each object's path maps to its interfaces.

GLib reports what it dislikes as warnings on stderr, which the caller checks is empty.
Runs with Debian's python3 (python3-gi), whatever python3 comes first in PATH."""
import json
import sys

import gi

gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib  # noqa: E402

NAME = "org.corral.Corral1"
connection = Gio.DBusConnection.new_for_address_sync(
    sys.argv[1],
    Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
    | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
    None,
    None,
)


def introspect(path):
    reply = connection.call_sync(
        NAME,
        path,
        "org.freedesktop.DBus.Introspectable",
        "Introspect",
        None,
        GLib.VariantType.new("(s)"),
        Gio.DBusCallFlags.NONE,
        -1,
        None,
    )
    return Gio.DBusNodeInfo.new_for_xml(reply.unpack()[0])


def walk(path, found):
    info = introspect(path)
    found[path] = sorted(i.name for i in info.interfaces)
    for child in info.nodes:
        walk(path.rstrip("/") + "/" + child.path, found)
    return found


manager = Gio.DBusObjectManagerClient.new_sync(
    connection,
    Gio.DBusObjectManagerClientFlags.DO_NOT_AUTO_START,
    NAME,
    "/org/corral/Corral1",
    None,
    None,
    None,
)
managed = {
    obj.get_object_path(): sorted(i.get_interface_name() for i in obj.get_interfaces())
    for obj in manager.get_objects()
}

json.dump({"walk": walk("/", {}), "managed": managed}, sys.stdout)
