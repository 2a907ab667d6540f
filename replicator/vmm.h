/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The run loop: one thread per vCPU, one exit switch, and the freeze that
 * turns a KVM_EXIT_KEMARI_SYNC into a checkpoint (kemari.rst 3 and 4).
 */
#ifndef REPLICATOR_VMM_H
#define REPLICATOR_VMM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "ckpt.h"
#include "devices.h"
#include "kvm.h"
#include "stats.h"

struct vmm;

/*
 * Called with every vCPU stopped and the checkpoint built in vmm->ck:
 * send it and wait for the acknowledgment.  NULL: run unprotected.
 */
typedef int (*commit_fn)(struct vmm *vmm, uint64_t seq);
/* Called with every vCPU stopped, before checkpoint seq is built. */
typedef void (*prepare_fn)(struct vmm *vmm, uint64_t seq);

struct vmm {
	struct vm vm;
	struct devices dev;
	struct guest_config gc;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool freeze;
	unsigned int in_run;
	unsigned int done;
	bool vcpu_done[MAX_VCPUS];
	pthread_t thread[MAX_VCPUS];
	uint64_t seq;			/* of the latest checkpoint */
	uint64_t last_pages;		/* in the latest checkpoint */
	uint64_t last_harvest_ns;	/* its harvest and reset */
	struct ck_buf ck;
	uint64_t *gfns;
	uint64_t *seen;			/* bitmap for vmm__dedup() */
	size_t max_gfns;
	bool want_full;			/* the next checkpoint is a full one */
	bool ck_full;			/* vmm->ck is a full checkpoint */
	prepare_fn prepare;
	commit_fn commit;
	struct stats stats;
};

int vmm__init(struct vmm *vmm, const struct guest_config *gc);
/*
 * Build the checkpoint of the stopped VM in vmm->ck.  A full one holds all
 * memory and the whole block device, so that a secondary that joins with
 * nothing can take over from it.
 */
int vmm__checkpoint(struct vmm *vmm, bool full);
/*
 * Ask for a sync point now (KVM_KEMARI_FREEZE): every vCPU leaves KVM_RUN,
 * and the first to see it leads a checkpoint.  A full one if full.
 */
int vmm__request_checkpoint(struct vmm *vmm, bool full);
/* Run every vCPU until the guest is done; 0 or -errno. */
int vmm__run(struct vmm *vmm);
/* The guest's verdict and the block device check, after vmm__run(). */
int vmm__verify(struct vmm *vmm);

#endif /* REPLICATOR_VMM_H */
