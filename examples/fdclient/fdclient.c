/*
 * fdclient: uses a socket exported by tunstack (stack.Socket.File) through
 * plain POSIX calls, to show that a non-Go program needs nothing special.
 *
 *   fdclient sink FD       read until EOF (the peer's FIN), then write back
 *                          "<bytes> <fnv1a64 hex>\n" and shutdown(SHUT_WR)
 *   fdclient source FD N   write N bytes (byte i is i*131+7 mod 256), then
 *                          shutdown(SHUT_WR) and print what comes back
 *   fdclient accept FD K   FD is an exported listener: receive K connection
 *                          fds (SCM_RIGHTS) and greet each peer
 *   fdclient udp FD        FD is a connected UDP socket: send 3 datagrams,
 *                          print the 3 replies
 *
 * Build: cc -O2 -o fdclient fdclient.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what) {
	perror(what);
	exit(1);
}

/* wait blocks until fd is ready for events, checking poll works on it. */
static void wait(int fd, short events) {
	struct pollfd p = {.fd = fd, .events = events};
	for (;;) {
		int n = poll(&p, 1, 30000);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("poll");
		if (n == 0) {
			fprintf(stderr, "poll: timed out\n");
			exit(1);
		}
		return; /* ready, or HUP/ERR which the next call reports */
	}
}

static void write_all(int fd, const char *b, size_t n) {
	while (n > 0) {
		wait(fd, POLLOUT);
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			die("write");
		b += w;
		n -= (size_t)w;
	}
}

static void drain_print(int fd) {
	char buf[4096];
	for (;;) {
		wait(fd, POLLIN);
		ssize_t r = read(fd, buf, sizeof buf);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("read");
		if (r == 0)
			return;
		fwrite(buf, 1, (size_t)r, stdout);
	}
}

static int sink(int fd) {
	static char buf[1 << 16];
	uint64_t h = 14695981039346656037ULL, total = 0;
	for (;;) {
		wait(fd, POLLIN);
		ssize_t r = read(fd, buf, sizeof buf);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("read");
		if (r == 0)
			break; /* the peer's FIN */
		for (ssize_t i = 0; i < r; i++) {
			h ^= (unsigned char)buf[i];
			h *= 1099511628211ULL;
		}
		total += (uint64_t)r;
	}
	char line[64];
	int n = snprintf(line, sizeof line, "%" PRIu64 " %016" PRIx64 "\n", total, h);
	write_all(fd, line, (size_t)n);
	if (shutdown(fd, SHUT_WR) < 0)
		die("shutdown");
	printf("%s", line);
	return 0;
}

static int source(int fd, uint64_t n) {
	static char buf[1 << 16];
	uint64_t i = 0;
	while (i < n) {
		size_t k = sizeof buf;
		if (n - i < k)
			k = (size_t)(n - i);
		for (size_t j = 0; j < k; j++)
			buf[j] = (char)(((i + j) * 131 + 7) & 0xff);
		write_all(fd, buf, k);
		i += k;
	}
	if (shutdown(fd, SHUT_WR) < 0)
		die("shutdown");
	drain_print(fd);
	return 0;
}

static int accept_fds(int fd, int k) {
	for (int i = 0; i < k; i++) {
		char peer[128];
		char cbuf[CMSG_SPACE(sizeof(int))];
		struct iovec iov = {.iov_base = peer, .iov_len = sizeof peer - 1};
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
		wait(fd, POLLIN);
		ssize_t r = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
		if (r <= 0)
			die("recvmsg");
		peer[r] = 0;
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		if (c == NULL || c->cmsg_type != SCM_RIGHTS) {
			fprintf(stderr, "no fd in message\n");
			return 1;
		}
		int conn;
		memcpy(&conn, CMSG_DATA(c), sizeof conn);
		char line[160];
		int n = snprintf(line, sizeof line, "hello %s\n", peer);
		write_all(conn, line, (size_t)n);
		close(conn);
		printf("accepted %s\n", peer);
	}
	return 0;
}

static int udp(int fd) {
	for (int i = 1; i <= 3; i++) {
		char msg[32];
		int n = snprintf(msg, sizeof msg, "ping %d", i);
		if (send(fd, msg, (size_t)n, 0) != n)
			die("send");
	}
	for (int i = 0; i < 3; i++) {
		char buf[256];
		wait(fd, POLLIN);
		ssize_t r = recv(fd, buf, sizeof buf, 0);
		if (r < 0)
			die("recv");
		printf("%.*s\n", (int)r, buf);
	}
	return 0;
}

int main(int argc, char **argv) {
	if (argc < 3) {
		fprintf(stderr, "usage: fdclient sink|source|accept|udp FD [N]\n");
		return 2;
	}
	int fd = atoi(argv[2]);
	if (strcmp(argv[1], "sink") == 0)
		return sink(fd);
	if (strcmp(argv[1], "source") == 0 && argc > 3)
		return source(fd, strtoull(argv[3], NULL, 10));
	if (strcmp(argv[1], "accept") == 0 && argc > 3)
		return accept_fds(fd, atoi(argv[3]));
	if (strcmp(argv[1], "udp") == 0)
		return udp(fd);
	fprintf(stderr, "fdclient: bad arguments\n");
	return 2;
}
