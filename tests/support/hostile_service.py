#!/usr/bin/env python3
"""A service that abuses corral's control channel (unix socket argv[1]) in the way named by
argv[2], and otherwise answers `echo` like tests/support/control_service.py:

  huge        on connect, a frame of 1 MiB + 1 bytes (newline included), then behaves
  endless     on connect, bytes without a newline, forever (64 KiB every 10 ms); never answers
  badutf8     on connect, frames of invalid UTF-8 (bare, and inside a JSON string), then behaves
  unknownid   answers every request twice: first for an id corrald never sent, then for real
  flood       sends upcall.invalidate notifications at 10,000 per second, and answers
  deaf        accepts and never reads nor writes

Each connection is served on its own thread; the process runs until it is killed.
"""
import json
import os
import socket
import sys
import threading
import time

path, mode = sys.argv[1], sys.argv[2]
MAX_FRAME = 1 << 20
try:
    os.unlink(path)
except FileNotFoundError:
    pass
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(16)
deaf = []  # connections a deaf service holds open (so they are not closed by GC)


def frame(obj):
    return (json.dumps(obj) + "\n").encode()


def serve(conn):
    lock = threading.Lock()

    def send(raw):
        with lock:
            conn.sendall(raw)

    if mode == "deaf":
        deaf.append(conn)
        return
    if mode == "huge":
        # A valid notification padded with spaces to one byte over the limit.
        note = b'{"jsonrpc":"2.0","method":"upcall.invalidate","params":{"resource":"/r","attrs":[]}}'
        send(note + b" " * (MAX_FRAME - len(note)) + b"\n")
    if mode == "endless":
        while True:
            send(b"x" * 65536)
            time.sleep(0.01)
    if mode == "badutf8":
        send(b"\xff\xfe\xfd\n")
        send(b'{"jsonrpc":"2.0","method":"upcall.invalidate","params":{"resource":"\xc3\x28","attrs":[]}}\n')
        send(b'{"jsonrpc":"2.0","id":1,"result":"\xed\xa0\x80"}\n')
    if mode == "flood":
        def flood():
            note = frame({"jsonrpc": "2.0", "method": "upcall.invalidate",
                          "params": {"resource": "/flood", "attrs": ["mtime"]}})
            batch = note * 100
            while True:
                started = time.monotonic()
                try:
                    send(batch)
                except OSError:
                    return
                # 100 notifications per 10 ms: 10,000 per second.
                time.sleep(max(0.0, 0.01 - (time.monotonic() - started)))
        threading.Thread(target=flood, daemon=True).start()

    with conn, conn.makefile("rb") as lines:
        for line in lines:
            req = json.loads(line)
            if mode == "unknownid":
                send(frame({"jsonrpc": "2.0", "id": 987654321, "result": "not for you"}))
            if req["method"] == "echo":
                send(frame({"jsonrpc": "2.0", "id": req["id"], "result": " ".join(req["params"])}))
            else:
                send(frame({"jsonrpc": "2.0", "id": req["id"],
                            "error": {"code": -32601, "message": "no " + req["method"]}}))


while True:
    connection, _ = server.accept()
    threading.Thread(target=serve, args=(connection,), daemon=True).start()
