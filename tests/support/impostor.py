#!/usr/bin/env python3
"""An impostor on a service's control socket: listens on argv[1] before the service does
and records in argv[2] every connection it accepts and every byte it receives. It answers
any request as the service would and offers an upcall at once, so a corrald that trusted
it would show it. Prints "listening" once bound."""
import json
import socket
import sys
import threading

path, record = sys.argv[1], sys.argv[2]
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(16)
lock = threading.Lock()


def log(line):
    with lock, open(record, "a") as out:
        out.write(line + "\n")


def serve(conn):
    log("connection")
    with conn:
        try:
            conn.sendall(b'{"jsonrpc":"2.0","method":"upcall.invalidate",'
                         b'"params":{"resource":"/etc/shadow","attrs":[]}}\n')
        except OSError:
            pass
        try:
            for line in conn.makefile("rb"):
                log("received " + line.decode(errors="replace").rstrip("\n"))
                try:
                    req_id = json.loads(line)["id"]
                except (ValueError, KeyError, TypeError):
                    continue
                frame = {"jsonrpc": "2.0", "id": req_id, "result": "the impostor's answer"}
                conn.sendall((json.dumps(frame) + "\n").encode())
        except OSError:
            # corrald hung up with our upcall unread: the connection is reset.
            pass


print("listening", flush=True)
while True:
    connection, _ = server.accept()
    threading.Thread(target=serve, args=(connection,), daemon=True).start()
