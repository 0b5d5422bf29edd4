/*
 * controlfd: ask a running tunstack instance for a socket on its stack over
 * the control socket, receive it as a file descriptor (SCM_RIGHTS) and use
 * it. See docs/CONTROL.md, "File descriptors".
 *
 *   controlfd SOCKET connect [HOST]:PORT  copy stdin to the connection
 *                                         (then shut down writing) and the
 *                                         connection to stdout
 *   controlfd SOCKET listen [HOST]:PORT   accept one connection, print its
 *                                         peer to stderr, then copy as above
 *   controlfd SOCKET udp [HOST]:PORT      send stdin as one datagram, print
 *                                         the first reply
 *
 * Build: cc -O2 -Wall -o controlfd controlfd.c
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void die(const char *what) {
	perror(what);
	exit(1);
}

/* recv_fd reads with recvmsg, appending data to buf and returning any fd. */
static ssize_t recv_fd(int s, char *buf, size_t len, int *fd) {
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {buf, len};
	struct msghdr msg = {0};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cbuf;
	msg.msg_controllen = sizeof cbuf;
	ssize_t n = recvmsg(s, &msg, MSG_CMSG_CLOEXEC);
	if (n < 0)
		return n;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(fd, CMSG_DATA(c), sizeof(int));
	return n;
}

/* request asks the instance at path for a socket; it returns the fd or
 * prints the instance's error and exits. */
static int request(const char *path, const char *op, const char *addr) {
	for (const char *p = addr; *p; p++)
		if (*p == '"' || *p == '\\') {
			fprintf(stderr, "bad address\n");
			exit(2);
		}
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (s < 0)
		die("socket");
	if (strlen(path) >= sizeof sa.sun_path) {
		fprintf(stderr, "socket path too long\n");
		exit(2);
	}
	strcpy(sa.sun_path, path);
	if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0)
		die(path);
	char body[512], req[1024];
	int bl = snprintf(body, sizeof body, "{\"op\":\"%s\",\"addr\":\"%s\"}", op, addr);
	int rl = snprintf(req, sizeof req,
	                  "POST /v1/fd HTTP/1.1\r\nHost: tunstack\r\nContent-Type: application/json\r\n"
	                  "Content-Length: %d\r\n\r\n%s",
	                  bl, body);
	if (write(s, req, rl) != rl)
		die("write request");
	/* Read the response with recvmsg until the fd arrives or the server
	 * closes: the fd rides on the byte after the headers. */
	char resp[8192];
	size_t got = 0;
	int fd = -1;
	for (;;) {
		ssize_t n = recv_fd(s, resp + got, sizeof resp - 1 - got, &fd);
		if (n < 0)
			die("recvmsg");
		got += n;
		if (fd >= 0 || n == 0 || got == sizeof resp - 1)
			break;
	}
	resp[got] = 0;
	close(s);
	if (strncmp(resp, "HTTP/1.1 101", 12) != 0 || fd < 0) {
		char *body_start = strstr(resp, "\r\n\r\n");
		fprintf(stderr, "controlfd: %s\n", body_start ? body_start + 4 : resp);
		exit(1);
	}
	char *local = strstr(resp, "X-Tunstack-Local: ");
	if (local) {
		local += 18;
		fprintf(stderr, "controlfd: local %.*s\n", (int)strcspn(local, "\r"), local);
	}
	return fd;
}

/* copy moves stdin to fd (then shutdown(SHUT_WR)) and fd to stdout until
 * the peer's EOF. */
static void copy(int fd) {
	char buf[65536];
	int in_open = 1;
	for (;;) {
		struct pollfd p[2] = {{fd, POLLIN, 0}, {0, POLLIN, 0}};
		if (poll(p, in_open ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		if (p[0].revents) {
			ssize_t n = read(fd, buf, sizeof buf);
			if (n < 0)
				die("read socket");
			if (n == 0)
				return;
			for (ssize_t off = 0; off < n;) {
				ssize_t w = write(1, buf + off, n - off);
				if (w < 0)
					die("write stdout");
				off += w;
			}
		}
		if (in_open && p[1].revents) {
			ssize_t n = read(0, buf, sizeof buf);
			if (n < 0)
				die("read stdin");
			if (n == 0) {
				shutdown(fd, SHUT_WR);
				in_open = 0;
				continue;
			}
			for (ssize_t off = 0; off < n;) {
				ssize_t w = write(fd, buf + off, n - off);
				if (w < 0)
					die("write socket");
				off += w;
			}
		}
	}
}

int main(int argc, char **argv) {
	if (argc != 4) {
		fprintf(stderr, "usage: %s SOCKET connect|listen|udp [HOST]:PORT\n", argv[0]);
		return 2;
	}
	const char *op = argv[2];
	int fd = request(argv[1], op, argv[3]);
	if (strcmp(op, "connect") == 0) {
		copy(fd);
	} else if (strcmp(op, "listen") == 0) {
		/* One message per accepted connection: the peer's address as
		 * text, the connection's fd in SCM_RIGHTS. */
		char peer[128];
		int conn = -1;
		ssize_t n = recv_fd(fd, peer, sizeof peer - 1, &conn);
		if (n <= 0 || conn < 0)
			die("accept");
		peer[n] = 0;
		fprintf(stderr, "controlfd: connection from %s\n", peer);
		close(fd); /* closes the listener */
		copy(conn);
	} else if (strcmp(op, "udp") == 0) {
		/* A connected UDP socket: SOCK_SEQPACKET, one datagram a
		 * message. */
		char buf[65536];
		ssize_t n = read(0, buf, sizeof buf);
		if (n < 0)
			die("read stdin");
		if (write(fd, buf, n) != n)
			die("send");
		n = read(fd, buf, sizeof buf);
		if (n < 0)
			die("recv");
		fwrite(buf, 1, n, stdout);
	} else {
		fprintf(stderr, "unknown op %s\n", op);
		return 2;
	}
	return 0;
}
