/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The replication link's security: TLS 1.3 with an external pre-shared
 * key (RFC 8446, section 2.2), through OpenSSL.  Both ends prove that they
 * hold the key before either parses a byte from the other; every record
 * is then encrypted and authenticated, and replays are refused by TLS's
 * sequence numbers.  Key exchange is psk_dhe_ke, so a key that leaks
 * later does not open recorded sessions.
 *
 * The key file has one line, "IDENTITY:HEXKEY", the format of QEMU's
 * tls-creds-psk keys.psk.  The same file goes on both nodes; a server
 * accepts only that identity.  The file must not be readable by group or
 * others: whoever holds the key can read all guest memory on the link.
 */
#ifndef REPLICATOR_TLS_H
#define REPLICATOR_TLS_H

#include <stddef.h>
#include <stdint.h>

#define TLS_PSK_ID_MAX		128
#define TLS_PSK_MIN		16	/* bytes: 128 bits */
#define TLS_PSK_MAX		64

struct tls_psk {
	char identity[TLS_PSK_ID_MAX + 1];
	uint8_t key[TLS_PSK_MAX];
	size_t key_len;
};

/*
 * How long a handshake may take.  The secondary gives each connection
 * TLS_SERVER_MS, so that one that never speaks (a port scan, a health
 * check) delays the primary's by that much at most; the primary waits
 * longer, as its connection may queue behind such a one.
 */
#define TLS_SERVER_MS		2000
#define TLS_CLIENT_MS		10000

struct wire_link;

/* 0, or -1 with the reason in why. */
int tls__load_psk(const char *path, struct tls_psk *psk, char *why,
		  size_t len);
/*
 * The handshake on l's socket, as client (the primary) or server (the
 * secondary), within timeout_ms.  0: l->ssl is set and the peer holds
 * the key; -1 with the reason in why, or -ETIMEDOUT if the peer did not
 * finish in time, and l is as it was.
 */
int tls__client(struct wire_link *l, const struct tls_psk *psk,
		int timeout_ms, char *why, size_t len);
int tls__server(struct wire_link *l, const struct tls_psk *psk,
		int timeout_ms, char *why, size_t len);
void tls__close(struct wire_link *l);
/* Wipe the key from memory. */
void tls__forget(struct tls_psk *psk);

/* SHA-256, for the digest an acknowledgment carries (wire.h). */
#define TLS_DIGEST_LEN		32
void tls__digest(const void *buf, size_t len, uint8_t out[TLS_DIGEST_LEN]);

#endif /* REPLICATOR_TLS_H */
