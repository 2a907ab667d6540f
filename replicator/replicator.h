/* SPDX-License-Identifier: GPL-2.0-only */
/* The three roles of kemari-replicator and the options they share. */
#ifndef REPLICATOR_H
#define REPLICATOR_H

#include <stdbool.h>
#include <stdint.h>

#include "guest/abi.h"
#include "kvm.h"
#include "tls.h"

struct options {
	struct vm_config vm;
	struct guest_config guest;
	const char *peer;		/* the secondary's address */
	int port;			/* replication port */
	const char *listen;		/* secondary: the address to wait on */
	const char *psk;		/* the link's key file (tls.h) */
	struct tls_psk key;		/* its key, loaded by main() */
	const char *observer;		/* the observer's address */
	int observer_port;
	const char *block;		/* block device file */
	const char *log;		/* observer: record log */
	const char *fence;		/* secondary: fencing command */
	const char *fence_file;		/* secondary: the command, from a file */
	int timeout_ms;			/* heartbeat loss */
	int heartbeat_ms;
	int stats_ms;
	bool pipelined;			/* primary: resume before the ack */
	const char *plug_dev;		/* primary: buffer this interface */
	const char *event_log;		/* primary: checkpoints and acks */
	int ack_delay_ms;		/* test build: secondary, a slow link */
	int grace_ms;			/* primary: wait to be fenced */
	int corrupt_every;		/* test build: primary, damage checkpoints */
	bool plain_link;		/* test build: no TLS, for the bench */
	int fence_timeout_ms;		/* secondary: fencing command limit */
	int ack_timeout_ms;		/* primary: wait for an ack this long */
	int peer_port;			/* secondary: its own secondary's port */
	int rejoin_ms;			/* re-protection: connect this often */
};

/* The guest payload, linked in by guest_image.S. */
extern const uint8_t guest_image[], guest_image_end[];

struct vmm;

int primary__main(const struct options *o);
/*
 * A secondary that has taken over: once its guest runs, protect it with
 * the secondary at o->peer (o->peer_port), which may come later.
 */
void primary__protect_later(struct vmm *vmm, const struct options *o);
/*
 * The guest is done: a last checkpoint, committed, then the secondary is
 * told (MSG_BYE) and stands down.  0 or -errno.
 */
int primary__finish(struct vmm *vmm);
int secondary__main(const struct options *o);
const char *secondary__read_fence_file(const char *path);
int observer__main(const struct options *o);

/* Exit codes, for scripts and the test harness. */
#define EXIT_VERIFY_FAILED	2	/* the guest's checks failed */
#define EXIT_REFUSED		3	/* secondary: no takeover */
#define EXIT_TAKEOVER_FAILED	4	/* secondary: the restore failed */

#endif /* REPLICATOR_H */
