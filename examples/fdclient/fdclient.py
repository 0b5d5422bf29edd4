#!/usr/bin/env python3
"""fdclient.py: uses a socket exported by tunstack (stack.Socket.File)
through the standard socket module, like fdclient.c.

  fdclient.py sink FD       read until EOF, write back "<bytes> <sha256 hex>\\n",
                            then shutdown(SHUT_WR)
  fdclient.py source FD N   write N bytes (byte i is i*131+7 mod 256),
                            shutdown(SHUT_WR), print the reply
  fdclient.py accept FD K   receive K connection fds from an exported
                            listener (SCM_RIGHTS) and greet each peer
  fdclient.py udp FD        send 3 datagrams on a connected UDP socket,
                            print the 3 replies
"""
import hashlib
import select
import socket
import sys


def wait(s, ev):
    p = select.poll()
    p.register(s, ev)
    if not p.poll(30000):
        sys.exit("poll: timed out")


def sink(s):
    h, total = hashlib.sha256(), 0
    while True:
        wait(s, select.POLLIN)
        b = s.recv(1 << 16)
        if not b:
            break
        h.update(b)
        total += len(b)
    line = "%d %s\n" % (total, h.hexdigest())
    s.sendall(line.encode())
    s.shutdown(socket.SHUT_WR)
    print(line, end="")


def source(s, n):
    pattern = bytes((i * 131 + 7) & 0xFF for i in range(256))
    block = pattern * 256  # 64 KiB; a multiple of 256 keeps the phase
    sent = 0
    while sent < n:
        k = min(len(block), n - sent)
        wait(s, select.POLLOUT)
        s.sendall(block[:k])
        sent += k
    s.shutdown(socket.SHUT_WR)
    out = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        out += b
    sys.stdout.write(out.decode())


def accept(s, k):
    for _ in range(k):
        wait(s, select.POLLIN)
        msg, fds, _, _ = socket.recv_fds(s, 128, 1)
        peer = msg.decode()
        with socket.socket(fileno=fds[0]) as c:
            c.sendall(("hello %s\n" % peer).encode())
        print("accepted", peer)


def udp(s):
    for i in range(1, 4):
        s.send(b"ping %d" % i)
    for _ in range(3):
        wait(s, select.POLLIN)
        print(s.recv(256).decode())


def main():
    mode, fd = sys.argv[1], int(sys.argv[2])
    s = socket.socket(fileno=fd)
    if mode == "sink":
        sink(s)
    elif mode == "source":
        source(s, int(sys.argv[3]))
    elif mode == "accept":
        accept(s, int(sys.argv[3]))
    elif mode == "udp":
        udp(s)
    else:
        sys.exit("fdclient.py: bad mode")


if __name__ == "__main__":
    main()
