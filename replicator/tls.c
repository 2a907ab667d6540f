// SPDX-License-Identifier: GPL-2.0-only
/*
 * TLS 1.3 with an external PSK for the replication link (tls.h).  The
 * handshake runs here on the link's non-blocking socket; wire.c then
 * moves records through the same SSL object under the link's lock.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "tls.h"
#include "util.h"
#include "wire.h"

/* What the callbacks saw, for the reason of a failed handshake. */
struct tls_state {
	const struct tls_psk *psk;
	char note[200];
};

int tls__load_psk(const char *path, struct tls_psk *psk, char *why,
		  size_t len)
{
	char line[TLS_PSK_ID_MAX + 2 * TLS_PSK_MAX + 8], *colon, *hex;
	struct stat st;
	size_t n, i;
	FILE *f;

	memset(psk, 0, sizeof(*psk));
	f = fopen(path, "re");
	if (!f) {
		snprintf(why, len, "%s: %s", path, strerror(errno));
		return -1;
	}
	setvbuf(f, NULL, _IONBF, 0);	/* no copy of the key in stdio */
	if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
		snprintf(why, len, "%s is not a regular file", path);
		fclose(f);
		return -1;
	}
	if (st.st_mode & 077) {
		snprintf(why, len, "%s is readable by group or others (mode %03o): it holds the key to all guest memory on the link; chmod 600 it",
			 path, (unsigned int)(st.st_mode & 0777));
		fclose(f);
		return -1;
	}
	if (!fgets(line, sizeof(line), f)) {
		snprintf(why, len, "%s is empty", path);
		fclose(f);
		return -1;
	}
	fclose(f);
	line[strcspn(line, "\r\n")] = 0;
	colon = strchr(line, ':');
	if (!colon || colon == line || colon - line > TLS_PSK_ID_MAX) {
		snprintf(why, len, "%s: expected one line IDENTITY:HEXKEY, with an identity of 1 to %d characters",
			 path, TLS_PSK_ID_MAX);
		goto wipe;
	}
	*colon = 0;
	hex = colon + 1;
	n = strlen(hex);
	if (n % 2 || n / 2 < TLS_PSK_MIN || n / 2 > TLS_PSK_MAX) {
		snprintf(why, len, "%s: the key must be %d to %d bytes in hex (openssl rand -hex 32), not %zu digits",
			 path, TLS_PSK_MIN, TLS_PSK_MAX, n);
		goto wipe;
	}
	for (i = 0; i < n; i++) {
		if (!isxdigit((unsigned char)hex[i])) {
			snprintf(why, len, "%s: the key is not hex", path);
			goto wipe;
		}
	}
	for (i = 0; i < n / 2; i++) {
		char byte[3] = { hex[2 * i], hex[2 * i + 1], 0 };

		psk->key[i] = strtoul(byte, NULL, 16);
	}
	psk->key_len = n / 2;
	memcpy(psk->identity, line, colon - line + 1);	/* with its NUL */
	OPENSSL_cleanse(line, sizeof(line));
	return 0;
wipe:
	OPENSSL_cleanse(line, sizeof(line));
	OPENSSL_cleanse(psk, sizeof(*psk));
	return -1;
}

/* The PSK as a TLS 1.3 session with TLS_AES_128_GCM_SHA256. */
static SSL_SESSION *tls__session(SSL *ssl, const struct tls_psk *psk)
{
	static const unsigned char suite[] = { 0x13, 0x01 };
	const SSL_CIPHER *c = SSL_CIPHER_find(ssl, suite);
	SSL_SESSION *s = SSL_SESSION_new();

	if (!s || !c || !SSL_SESSION_set1_master_key(s, psk->key, psk->key_len) ||
	    !SSL_SESSION_set_cipher(s, c) ||
	    !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
		SSL_SESSION_free(s);
		return NULL;
	}
	return s;
}

static int tls__use_psk(SSL *ssl, const EVP_MD *md, const unsigned char **id,
			size_t *id_len, SSL_SESSION **sess)
{
	struct tls_state *st = SSL_get_app_data(ssl);
	SSL_SESSION *s = tls__session(ssl, st->psk);

	*sess = NULL;
	if (!s)
		return 0;
	if (md && md != SSL_CIPHER_get_handshake_digest(SSL_SESSION_get0_cipher(s))) {
		SSL_SESSION_free(s);
		return 1;
	}
	*id = (const unsigned char *)st->psk->identity;
	*id_len = strlen(st->psk->identity);
	*sess = s;
	return 1;
}

static int tls__find_psk(SSL *ssl, const unsigned char *id, size_t id_len,
			 SSL_SESSION **sess)
{
	struct tls_state *st = SSL_get_app_data(ssl);
	size_t mine = strlen(st->psk->identity);
	char shown[64];

	*sess = NULL;
	if (id_len != mine || CRYPTO_memcmp(id, st->psk->identity, mine)) {
		util__printable(shown, sizeof(shown), id, id_len);
		snprintf(st->note, sizeof(st->note),
			 "unknown PSK identity \"%s\"", shown);
		return 1;	/* no key: the handshake fails */
	}
	*sess = tls__session(ssl, st->psk);
	return *sess ? 1 : 0;
}

static void tls__reason(SSL *ssl, int e, struct tls_state *st, char *why,
			size_t len)
{
	unsigned long err = ERR_get_error();
	char buf[160];

	if (st->note[0]) {
		snprintf(why, len, "%s", st->note);
	} else if (ERR_GET_REASON(err) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
		snprintf(why, len, "the peer closed the connection during the TLS handshake");
	} else if (err) {
		ERR_error_string_n(err, buf, sizeof(buf));
		snprintf(why, len, "TLS: %s", buf);
	} else if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN) {
		snprintf(why, len, "the peer closed the connection during the TLS handshake");
	} else {
		snprintf(why, len, "TLS handshake error %d", e);
	}
	(void)ssl;
	ERR_clear_error();
}

static int tls__handshake(struct wire_link *l, const struct tls_psk *psk,
			  bool server, int timeout_ms, char *why, size_t len)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000;
	struct tls_state st = { .psk = psk };
	SSL_CTX *ctx;
	SSL *ssl;

	ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx) {
		snprintf(why, len, "TLS: cannot create a context");
		return -1;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256");
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
			      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (server) {
		SSL_CTX_set_num_tickets(ctx, 0);
		SSL_CTX_set_psk_find_session_callback(ctx, tls__find_psk);
	} else {
		/* No trust store: a server that shows a certificate fails. */
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		SSL_CTX_set_psk_use_session_callback(ctx, tls__use_psk);
	}
	ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);
	if (!ssl || !SSL_set_fd(ssl, l->fd)) {
		SSL_free(ssl);
		snprintf(why, len, "TLS: cannot create a session");
		return -1;
	}
	SSL_set_app_data(ssl, &st);
	ERR_clear_error();
	for (;;) {
		int r = server ? SSL_accept(ssl) : SSL_connect(ssl);
		struct pollfd pfd = { .fd = l->fd };
		int e = SSL_get_error(ssl, r);
		uint64_t now = now_ns();

		if (r == 1)
			break;
		if (e == SSL_ERROR_WANT_READ)
			pfd.events = POLLIN;
		else if (e == SSL_ERROR_WANT_WRITE)
			pfd.events = POLLOUT;
		if (!pfd.events || now >= end) {
			if (pfd.events)
				snprintf(why, len, "no TLS handshake within %d ms",
					 timeout_ms);
			else
				tls__reason(ssl, e, &st, why, len);
			SSL_free(ssl);
			return pfd.events ? -ETIMEDOUT : -1;
		}
		if (poll(&pfd, 1, (end - now) / 1000000 + 1) < 0 &&
		    errno != EINTR) {
			snprintf(why, len, "poll: %s", strerror(errno));
			SSL_free(ssl);
			return -1;
		}
	}
	/* Belt and braces: the session must rest on the PSK. */
	if (!SSL_session_reused(ssl)) {
		snprintf(why, len, "the TLS session does not use the pre-shared key");
		SSL_free(ssl);
		return -1;
	}
	SSL_set_app_data(ssl, NULL);
	l->ssl = ssl;
	return 0;
}

int tls__client(struct wire_link *l, const struct tls_psk *psk,
		int timeout_ms, char *why, size_t len)
{
	return tls__handshake(l, psk, false, timeout_ms, why, len);
}

int tls__server(struct wire_link *l, const struct tls_psk *psk,
		int timeout_ms, char *why, size_t len)
{
	return tls__handshake(l, psk, true, timeout_ms, why, len);
}

void tls__close(struct wire_link *l)
{
	if (l->ssl) {
		SSL_shutdown(l->ssl);
		SSL_free(l->ssl);
		l->ssl = NULL;
	}
}

void tls__forget(struct tls_psk *psk)
{
	OPENSSL_cleanse(psk, sizeof(*psk));
}

void tls__digest(const void *buf, size_t len, uint8_t out[TLS_DIGEST_LEN])
{
	unsigned int n = TLS_DIGEST_LEN;

	if (!EVP_Digest(buf, len, out, &n, EVP_sha256(), NULL))
		memset(out, 0, TLS_DIGEST_LEN);
}
