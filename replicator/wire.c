// SPDX-License-Identifier: GPL-2.0-only
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls.h"
#include "util.h"
#include "wire.h"

const char *wire__strerror(int status)
{
	switch (status) {
	case WIRE_OK:		return "ok";
	case WIRE_TIMEOUT:	return "timed out";
	case WIRE_CLOSED:	return "peer closed the link";
	case WIRE_BAD_HEADER:	return "corrupt message header";
	case WIRE_BAD_PAYLOAD:	return "payload checksum mismatch";
	case WIRE_TOO_BIG:	return "message larger than allowed";
	case WIRE_BAD_RECORD:	return "TLS record failed authentication";
	case WIRE_BAD_VERSION:	return "the peer speaks another version of the protocol (both ends must run the same build)";
	default:		return "system error";
	}
}

int wire__hello_check(const struct wire_hello *mine,
		      const struct wire_hello *peer, char *why, size_t len)
{
	const struct wire_hello *pri = mine->role == HELLO_PRIMARY ? mine : peer;
	const struct wire_hello *sec = mine->role == HELLO_PRIMARY ? peer : mine;
	uint32_t min;

	if (peer->version != WIRE_VERSION) {
		snprintf(why, len, "protocol version %u, not %u", peer->version,
			 WIRE_VERSION);
		return -1;
	}
	if (peer->role == mine->role || peer->reserved) {
		snprintf(why, len, "the peer is not a %s",
			 mine->role == HELLO_PRIMARY ? "secondary" : "primary");
		return -1;
	}
	if (peer->nr_vcpus != mine->nr_vcpus || peer->mem_size != mine->mem_size) {
		snprintf(why, len, "VM shape %u vCPUs, %llu MiB, not %u vCPUs, %llu MiB (--vcpus, --mem)",
			 peer->nr_vcpus,
			 (unsigned long long)(peer->mem_size >> 20),
			 mine->nr_vcpus,
			 (unsigned long long)(mine->mem_size >> 20));
		return -1;
	}
	if (!pri->tsc_khz || sec->tsc_khz) {
		snprintf(why, len, "the primary must state the guest's TSC rate, and only the primary");
		return -1;
	}
	if (memcmp(peer->cpuid, mine->cpuid, sizeof(mine->cpuid))) {
		snprintf(why, len, "the %s host gives the guest another CPUID (KVM_GET_SUPPORTED_CPUID differs): after a takeover the guest would see other features",
			 mine->role == HELLO_PRIMARY ? "secondary's" : "primary's");
		return -1;
	}
	min = wire__min_grace_ms(sec->timeout_ms, sec->fence_timeout_ms);
	/* 0: the primary takes the least that the secondary allows. */
	if (pri->grace_ms && pri->grace_ms < min) {
		snprintf(why, len, "the primary's --grace %u ms is below the secondary's --timeout %u + --fence-timeout %u + margin %u = %u ms: a slow fence could take over after the primary has gone on unprotected",
			 pri->grace_ms, sec->timeout_ms, sec->fence_timeout_ms,
			 wire__margin_ms(sec->timeout_ms, sec->fence_timeout_ms),
			 min);
		return -1;
	}
	return 0;
}

#define WIRE_REKEY_BYTES	(16ULL << 30)

void wire__link_init(struct wire_link *l, int fd)
{
	*l = (struct wire_link){ .fd = fd, .send_timeout_ms = -1 };
	pthread_mutex_init(&l->lock, NULL);
	if (fd >= 0)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

void wire__link_close(struct wire_link *l)
{
	tls__close(l);
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}

/*
 * One read or write: the bytes moved, 0 if the peer closed the link, or
 * a wire_status; WIRE_TIMEOUT here means "wait for *events".
 */
static ssize_t link__io(struct wire_link *l, bool wr, void *p, size_t len,
			short *events)
{
	size_t done = 0;
	int ok, e, reason;
	ssize_t n;

	if (!l->ssl) {
		n = wr ? send(l->fd, p, len, MSG_NOSIGNAL) : recv(l->fd, p, len, 0);
		if (n >= 0)
			return n;
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
			*events = wr ? POLLOUT : POLLIN;
			return WIRE_TIMEOUT;
		}
		return errno == EPIPE || errno == ECONNRESET ? 0 : WIRE_ERROR;
	}
	pthread_mutex_lock(&l->lock);
	ERR_clear_error();
	ok = wr ? SSL_write_ex(l->ssl, p, len, &done) :
		  SSL_read_ex(l->ssl, p, len, &done);
	e = ok ? SSL_ERROR_NONE : SSL_get_error(l->ssl, 0);
	reason = e == SSL_ERROR_SSL ? ERR_GET_REASON(ERR_peek_error()) : 0;
	/*
	 * AES-GCM's safety limit is about 2^24.5 records a key (RFC 8446
	 * 5.5), and OpenSSL does not update the key by itself: do it every
	 * WIRE_REKEY_BYTES, at most 2^20 full records.
	 */
	if (ok && wr)
		l->sent += done;
	if (l->sent >= WIRE_REKEY_BYTES &&
	    SSL_key_update(l->ssl, SSL_KEY_UPDATE_NOT_REQUESTED))
		l->sent = 0;
	ERR_clear_error();
	pthread_mutex_unlock(&l->lock);
	/* OpenSSL 3 reports an end without close_notify as an error. */
	if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)
		return 0;
	switch (e) {
	case SSL_ERROR_NONE:
		return done;
	case SSL_ERROR_WANT_READ:
		*events = POLLIN;
		return WIRE_TIMEOUT;
	case SSL_ERROR_WANT_WRITE:
		*events = POLLOUT;
		return WIRE_TIMEOUT;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		/* A reset, or a shutdown() of our own. */
		return 0;
	default:
		/*
		 * A record that failed to authenticate here, or one that
		 * the peer told us (its alert) failed there.  Any other
		 * TLS error is an error of the link, not evidence of an
		 * attack.
		 */
		if (reason == SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC ||
		    reason == SSL_R_SSLV3_ALERT_BAD_RECORD_MAC)
			return WIRE_BAD_RECORD;
		return WIRE_ERROR;
	}
}

/* Move all len bytes; each wait is bounded by timeout_ms (-1: none). */
static int link__all(struct wire_link *l, bool wr, void *buf, size_t len,
		     int timeout_ms)
{
	uint8_t *p = buf;
	int r = WIRE_OK;

	if (wr && l->broken)
		return WIRE_CLOSED;
	while (len) {
		struct pollfd pfd = { .fd = l->fd };
		ssize_t n = link__io(l, wr, p, len, &pfd.events);

		if (n > 0) {
			p += n;
			len -= n;
			continue;
		}
		if (n == 0 || n != WIRE_TIMEOUT) {
			r = n ? n : WIRE_CLOSED;
			break;
		}
		r = poll(&pfd, 1, timeout_ms);
		if (r < 0 && errno != EINTR) {
			r = WIRE_ERROR;
			break;
		}
		if (r == 0) {
			r = WIRE_TIMEOUT;
			break;
		}
		r = WIRE_OK;
	}
	if (wr && r)
		l->broken = true;
	return r;
}

#define WIRE_SMALL	1024

static int write_all(struct wire_link *l, const void *buf, size_t len)
{
	return link__all(l, true, (void *)buf, len, l->send_timeout_ms);
}

static int read_all(struct wire_link *l, void *buf, size_t len,
		    int timeout_ms)
{
	return link__all(l, false, buf, len, timeout_ms);
}

void wire__header(struct msg_hdr *h, enum msg_type type, uint64_t seq,
		  const void *payload, size_t len)
{
	*h = (struct msg_hdr){
		.magic = WIRE_MAGIC,
		.version = WIRE_VERSION,
		.type = type,
		.seq = seq,
		.len = len,
		.crc = crc32c(0, payload, len),
	};
	h->hdr_crc = crc32c(0, h, offsetof(struct msg_hdr, hdr_crc));
}

int wire__send(struct wire_link *l, enum msg_type type, uint64_t seq,
	       const void *payload, size_t len)
{
	struct msg_hdr h;
	int r;

	wire__header(&h, type, seq, payload, len);
	/* A small message goes in one write: one TLS record, one segment. */
	if (len <= WIRE_SMALL) {
		uint8_t one[sizeof(h) + WIRE_SMALL];

		memcpy(one, &h, sizeof(h));
		if (len)
			memcpy(one + sizeof(h), payload, len);
		return write_all(l, one, sizeof(h) + len);
	}
	r = write_all(l, &h, sizeof(h));
	return r ? r : write_all(l, payload, len);
}

#ifdef KEMARI_TEST_HOOKS
int wire__send_damaged(struct wire_link *l, enum msg_type type, uint64_t seq,
			const void *payload, size_t len, size_t at)
{
	uint8_t *copy = malloc(len);
	struct msg_hdr h;
	int r;

	if (!copy || at >= len) {
		free(copy);
		return WIRE_ERROR;
	}
	wire__header(&h, type, seq, payload, len);
	memcpy(copy, payload, len);
	copy[at] ^= 0x5a;
	r = write_all(l, &h, sizeof(h));
	if (!r)
		r = write_all(l, copy, len);
	free(copy);
	return r;
}
#endif

int wire__recv(struct wire_link *l, struct msg_hdr *hdr, uint8_t **buf, size_t *cap,
	       size_t max_len, int timeout_ms)
{
	int r = read_all(l, hdr, sizeof(*hdr), timeout_ms);

	if (r)
		return r;
	if (hdr->magic != WIRE_MAGIC ||
	    hdr->hdr_crc != crc32c(0, hdr, offsetof(struct msg_hdr, hdr_crc)))
		return WIRE_BAD_HEADER;
	if (hdr->version != WIRE_VERSION)
		return WIRE_BAD_VERSION;
	if (hdr->len > max_len)
		return WIRE_TOO_BIG;
	if (hdr->len > *cap) {
		uint8_t *p = realloc(*buf, hdr->len);

		if (!p)
			return WIRE_ERROR;
		*buf = p;
		*cap = hdr->len;
	}
	r = read_all(l, *buf, hdr->len, timeout_ms);
	if (r)
		return r;
	if (crc32c(0, *buf, hdr->len) != hdr->crc)
		return WIRE_BAD_PAYLOAD;
	return WIRE_OK;
}

static int wire__addr(const char *addr, int port, struct sockaddr_in *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons(port);
	return inet_pton(AF_INET, addr, &sa->sin_addr) == 1 ? 0 : -EINVAL;
}

int wire__listen(const char *addr, int port)
{
	struct sockaddr_in sa;
	int fd, one = 1;

	if (wire__addr(addr, port, &sa))
		return -EINVAL;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 8)) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

static void wire__nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* A send that cannot progress for ms fails with WIRE_TIMEOUT. */
void wire__send_timeout(int fd, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = ms % 1000 * 1000 };

	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

int wire__accept(int lfd, int timeout_ms)
{
	struct pollfd pfd = { .fd = lfd, .events = POLLIN };
	int fd, r;

	do {
		r = poll(&pfd, 1, timeout_ms);
	} while (r < 0 && errno == EINTR);
	if (r <= 0)
		return r ? -errno : -ETIMEDOUT;
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return -errno;
	wire__nodelay(fd);
	return fd;
}

/* Retry until timeout_ms: the peer may still be starting. */
int wire__connect(const char *addr, int port, int timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000;
	struct sockaddr_in sa;
	int fd, e;

	if (wire__addr(addr, port, &sa))
		return -EINVAL;
	for (;;) {
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
			wire__nodelay(fd);
			return fd;
		}
		e = -errno;
		close(fd);
		if (now_ns() > end)
			return e;
		usleep(20000);
	}
}
