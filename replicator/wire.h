/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The replication link: messages over one TCP connection, inside TLS 1.3
 * with a pre-shared key (tls.h) in the product; plain only in tests.
 *
 * Every message is a header followed by len bytes of payload.  The
 * header carries its own CRC, so a damaged length is caught before it is
 * trusted, and the payload's CRC.  A receiver that finds a bad header
 * cannot find the next message and drops the link; one that finds a bad
 * payload refuses that message (MSG_NAK) and the link goes on.
 */
#ifndef REPLICATOR_WIRE_H
#define REPLICATOR_WIRE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_MAGIC	0x4b4d5250u	/* "KMRP" */
#define WIRE_VERSION	2

enum msg_type {
	MSG_CKPT = 1,		/* primary: a checkpoint (ckpt.h) */
	/* secondary: checkpoint seq applied; payload: its SHA-256 (tls.h) */
	MSG_ACK = 2,
	MSG_NAK = 3,		/* secondary: checkpoint seq refused */
	/* primary: still alive; seq: its CLOCK_MONOTONIC time of sending, ns */
	MSG_HEARTBEAT = 4,
	MSG_BYE = 5,		/* primary: the guest finished; no takeover */
	MSG_DETACH = 6,		/* primary: goes on unprotected; no takeover */
	MSG_HELLO = 7,		/* both: the handshake (struct wire_hello) */
};

/*
 * The handshake: the first message each way on a new link.  The primary
 * sends its MSG_HELLO; the secondary checks it and answers with its own,
 * or with MSG_NAK and the reason.  The primary checks the answer the same
 * way.  Both then hold the other to the timing rule of wire__hello_check():
 * the primary goes on unprotected after losing the link only once the
 * secondary can no longer take over (README.md, "Split brain").  The
 * handshake runs inside TLS: the peer has proven that it holds the key
 * before a byte of it is parsed.  "reserved" must be 0.
 */
#define HELLO_PRIMARY	1
#define HELLO_SECONDARY	2

struct wire_hello {
	uint32_t version;		/* WIRE_VERSION */
	uint32_t role;			/* HELLO_PRIMARY or HELLO_SECONDARY */
	uint32_t nr_vcpus;		/* the VM's shape: must match */
	uint32_t reserved;
	uint64_t mem_size;
	uint32_t timeout_ms;		/* the sender's --timeout */
	uint32_t grace_ms;		/* primary: its --grace; secondary: 0 */
	/* secondary: its --fence-timeout, 0 if it never fences; primary: 0 */
	uint32_t fence_timeout_ms;
	/*
	 * primary: the guest's TSC rate in kHz, which the secondary must be
	 * able to give a vCPU of its own (KVM_SET_TSC_KHZ); secondary: 0
	 */
	uint32_t tsc_khz;
	/*
	 * both: kvm__cpuid_digest(), the CPUID the host gives every vCPU;
	 * it must match, or the guest would see other features (and XSAVE
	 * state, leaf 0xd) after a takeover
	 */
	uint8_t cpuid[32];
};

/*
 * The margin that the timing rule leaves for clock rate differences,
 * scheduling and the network between the two hosts.
 */
static inline uint32_t wire__margin_ms(uint32_t timeout_ms, uint32_t fence_ms)
{
	return 250 + (timeout_ms + fence_ms) / 20;
}

/* The shortest grace a secondary with these settings allows. */
static inline uint32_t wire__min_grace_ms(uint32_t timeout_ms,
					  uint32_t fence_ms)
{
	return timeout_ms + fence_ms + wire__margin_ms(timeout_ms, fence_ms);
}

/*
 * Check the peer's hello against ours; 0, or -1 with the reason in why.
 * The VM's shape and the CPUID must match, the primary must state its
 * TSC rate, and the timing rule holds: grace > the secondary's timeout +
 * its fence timeout + the margin.  Whether the secondary can give the
 * guest that TSC rate only its KVM can say (secondary.c).
 */
int wire__hello_check(const struct wire_hello *mine,
		      const struct wire_hello *peer, char *why, size_t len);

struct msg_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint64_t seq;
	uint64_t len;
	uint32_t crc;		/* of the payload */
	uint32_t hdr_crc;	/* of the header up to here */
};

enum wire_status {
	WIRE_OK = 0,
	WIRE_TIMEOUT = -1,	/* nothing for timeout_ms */
	WIRE_CLOSED = -2,	/* the peer closed or reset the link */
	WIRE_BAD_HEADER = -3,	/* framing lost */
	WIRE_BAD_PAYLOAD = -4,	/* payload CRC mismatch: message refused */
	WIRE_TOO_BIG = -5,	/* len above the receiver's limit */
	WIRE_ERROR = -6,	/* a system call failed */
	WIRE_BAD_RECORD = -7,	/* TLS: a record failed authentication */
	WIRE_BAD_VERSION = -8,	/* a sound header of another WIRE_VERSION */
};

/*
 * One end of the link.  The socket is non-blocking; every read and write
 * goes through ssl, if set, under lock, so that one thread may send while
 * another receives.
 */
struct wire_link {
	int fd;
	struct ssl_st *ssl;		/* NULL: plain, for tests */
	pthread_mutex_t lock;
	int send_timeout_ms;		/* -1: none */
	/*
	 * A write failed or timed out part-way: the stream (and TLS's
	 * pending record) is torn, so every later write fails at once.
	 * Reads go on: what the peer sent before may still be read.
	 */
	bool broken;
	uint64_t sent;			/* bytes since the last key update */
};

void wire__link_init(struct wire_link *l, int fd);
void wire__link_close(struct wire_link *l);

const char *wire__strerror(int status);
void wire__header(struct msg_hdr *h, enum msg_type type, uint64_t seq,
		  const void *payload, size_t len);
int wire__send(struct wire_link *l, enum msg_type type, uint64_t seq,
	       const void *payload, size_t len);
#ifdef KEMARI_TEST_HOOKS
/* The test build: the same, with one payload byte changed after the CRC. */
int wire__send_damaged(struct wire_link *l, enum msg_type type, uint64_t seq,
		       const void *payload, size_t len, size_t at);
#endif
/*
 * Receive one message.  *buf is grown as needed (realloc); the payload
 * is checked against the header.  timeout_ms bounds every wait for data
 * (-1: none).
 */
int wire__recv(struct wire_link *l, struct msg_hdr *hdr, uint8_t **buf, size_t *cap,
	       size_t max_len, int timeout_ms);

/* For plain sockets (the observer's); a link has send_timeout_ms. */
void wire__send_timeout(int fd, int ms);
int wire__listen(const char *addr, int port);
int wire__accept(int lfd, int timeout_ms);
int wire__connect(const char *addr, int port, int timeout_ms);

#endif /* REPLICATOR_WIRE_H */
