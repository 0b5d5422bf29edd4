#!/usr/bin/env python3
"""Ask a running tunstack instance for a socket on its stack over the
control socket, receive it as a file descriptor (SCM_RIGHTS) and use it.
See docs/CONTROL.md, "File descriptors".

  controlfd.py SOCKET connect [HOST]:PORT   stdin to the connection (then
                                            shutdown(SHUT_WR)), the
                                            connection to stdout
  controlfd.py SOCKET listen [HOST]:PORT    accept one connection, print its
                                            peer to stderr, then as connect
  controlfd.py SOCKET udp [HOST]:PORT       send stdin as one datagram,
                                            print the first reply
"""
import json
import os
import socket
import sys


def request(path, op, addr):
    """Returns (fd as a socket object, response headers)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    body = json.dumps({"op": op, "addr": addr}).encode()
    s.sendall(b"POST /v1/fd HTTP/1.1\r\nHost: tunstack\r\n"
              b"Content-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    # recvmsg, never recv: the fd rides on the byte after the headers and
    # may arrive in the same call.
    data, fd = b"", None
    while fd is None:
        chunk, fds, _, _ = socket.recv_fds(s, 8192, 1)
        if fds:
            fd = fds[0]
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 101") or fd is None:
        try:
            msg = json.loads(rest)["error"]
        except (ValueError, KeyError):
            msg = data.decode(errors="replace")
        sys.exit("controlfd.py: " + msg)
    headers = dict(l.split(": ", 1) for l in lines[1:] if ": " in l)
    # connect gives a SOCK_STREAM socket; listen and udp SOCK_SEQPACKET.
    kind = socket.SOCK_STREAM if op == "connect" else socket.SOCK_SEQPACKET
    return socket.socket(socket.AF_UNIX, kind, fileno=fd), headers


def copy(conn):
    """stdin to conn, then SHUT_WR; conn to stdout until EOF."""
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(conn, selectors.EVENT_READ)
    sel.register(sys.stdin.buffer, selectors.EVENT_READ)
    out = sys.stdout.buffer
    while True:
        for key, _ in sel.select():
            if key.fileobj is conn:
                b = conn.recv(65536)
                if not b:
                    out.flush()
                    return
                out.write(b)
            else:
                b = os.read(0, 65536)
                if not b:
                    conn.shutdown(socket.SHUT_WR)
                    sel.unregister(sys.stdin.buffer)
                else:
                    conn.sendall(b)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    path, op, addr = sys.argv[1:]
    sock, headers = request(path, op, addr)
    print("controlfd.py: local", headers.get("X-Tunstack-Local"), file=sys.stderr)
    if op == "connect":
        copy(sock)
    elif op == "listen":
        # One message per accepted connection: the peer's address as text,
        # the connection's fd in SCM_RIGHTS.
        peer, fds, _, _ = socket.recv_fds(sock, 128, 1)
        if not fds:
            sys.exit("controlfd.py: the listener closed")
        sock.close()
        print("controlfd.py: connection from", peer.decode(), file=sys.stderr)
        copy(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=fds[0]))
    elif op == "udp":
        sock.send(sys.stdin.buffer.read())
        sys.stdout.buffer.write(sock.recv(65536))
    else:
        sys.exit("unknown op " + op)


if __name__ == "__main__":
    main()
