#!/usr/bin/env python3
"""A test service speaking corral's control protocol (JSON-RPC 2.0, one object per line)
on the unix socket given as argv[1]. Each request is answered on its own thread, so
requests pipeline and a slow one does not hold up the others.

Flags after the path:
  --no-replace   a socket already at the path is not ours to remove: wait until it is gone
                 (as a service whose path an impostor took cannot bind it)
  --own-session  leave the service's process group (setsid) and die with the parent, as a
                 worker process that listens on behalf of its parent
"""
import ctypes
import json
import os
import signal
import socket
import sys
import threading
import time

path, flags = sys.argv[1], sys.argv[2:]
if "--own-session" in flags:
    parent = os.getppid()
    os.setsid()
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        sys.exit(0)
if "--no-replace" in flags:
    while os.path.lexists(path):
        time.sleep(0.05)
else:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(16)


def serve(conn):
    lock = threading.Lock()

    def send(raw):
        with lock:
            conn.sendall(raw)

    def reply(req_id, result=None, error=None):
        frame = {"jsonrpc": "2.0", "id": req_id}
        if error is not None:
            frame["error"] = error
        else:
            frame["result"] = result
        send((json.dumps(frame) + "\n").encode())

    def notify(method, params):
        send((json.dumps({"jsonrpc": "2.0", "method": method, "params": params}) + "\n").encode())

    def handle(req):
        method, params, req_id = req["method"], req.get("params", []), req["id"]
        if method == "echo":
            reply(req_id, " ".join(params))
        elif method == "obj":
            reply(req_id, {"args": params, "n": len(params)})
        elif method == "fail":
            reply(req_id, error={"code": -32000, "message": "no such export: " + params[0]})
        elif method == "slow":
            time.sleep(float(params[0]))
            reply(req_id, "late")
        elif method == "garbage":
            send(b"this is not json\n")
            send(b'{"jsonrpc":"2.0","id":"x","result":1}\n')
            send(b'{"jsonrpc":"2.0","method":"upcall.invalidate","params":"no object"}\n')
            send(b"x" * (3 << 19) + b"\n")
            reply(req_id, "after garbage")
        elif method == "invalidate":
            notify("upcall.invalidate", {"resource": params[0], "attrs": params[1:]})
            reply(req_id, "sent")
        elif method == "conflict":
            notify("upcall.conflict", {"resource": params[0], "kind": "write"})
            reply(req_id, "sent")
        else:
            reply(req_id, error={"code": -32601, "message": "method not found: " + method})

    with conn, conn.makefile("rb") as lines:
        for line in lines:
            threading.Thread(target=handle, args=(json.loads(line),), daemon=True).start()


while True:
    connection, _ = server.accept()
    threading.Thread(target=serve, args=(connection,), daemon=True).start()
