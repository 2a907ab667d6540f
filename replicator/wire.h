/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The replication link: messages over one TCP connection.
 *
 * Every message is a header followed by len bytes of payload.  The
 * header carries its own CRC, so a damaged length is caught before it is
 * trusted, and the payload's CRC.  A receiver that finds a bad header
 * cannot find the next message and drops the link; one that finds a bad
 * payload refuses that message (MSG_NAK) and the link goes on.
 */
#ifndef REPLICATOR_WIRE_H
#define REPLICATOR_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_MAGIC	0x4b4d5250u	/* "KMRP" */
#define WIRE_VERSION	1

enum msg_type {
	MSG_CKPT = 1,		/* primary: a checkpoint (ckpt.h) */
	MSG_ACK = 2,		/* secondary: checkpoint seq applied */
	MSG_NAK = 3,		/* secondary: checkpoint seq refused */
	MSG_HEARTBEAT = 4,	/* primary: still alive */
	MSG_BYE = 5,		/* primary: the guest finished; no takeover */
	MSG_DETACH = 6,		/* primary: goes on unprotected; no takeover */
};

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
};

const char *wire__strerror(int status);
void wire__header(struct msg_hdr *h, enum msg_type type, uint64_t seq,
		  const void *payload, size_t len);
int wire__send(int fd, enum msg_type type, uint64_t seq,
	       const void *payload, size_t len);
/* For tests: the same, with one payload byte changed after the CRC. */
int wire__send_damaged(int fd, enum msg_type type, uint64_t seq,
		       const void *payload, size_t len, size_t at);
/*
 * Receive one message.  *buf is grown as needed (realloc); the payload
 * is checked against the header.  timeout_ms bounds every wait for data
 * (-1: none).
 */
int wire__recv(int fd, struct msg_hdr *hdr, uint8_t **buf, size_t *cap,
	       size_t max_len, int timeout_ms);

void wire__send_timeout(int fd, int ms);
int wire__listen(const char *addr, int port);
int wire__accept(int lfd, int timeout_ms);
int wire__connect(const char *addr, int port, int timeout_ms);

#endif /* REPLICATOR_WIRE_H */
