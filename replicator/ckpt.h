/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The checkpoint: what the primary sends at every sync point and what the
 * secondary applies, all or nothing.
 *
 * A checkpoint is a sequence of sections, each a struct ck_sec and len
 * bytes (padded to 8), in this order:
 *
 *   CK_VM      struct ck_vm: sequence number, memory size, vCPUs, TSC kHz
 *   CK_PAGES   u64 count, then count x (u64 gfn, 4096 bytes)
 *   CK_VCPU    struct ck_vcpu, once for every vCPU, in id order
 *   CK_IRQ     struct irq_state: PICs, IOAPIC, PIT
 *   CK_DEV     struct ck_dev, nr_blk x struct ck_blk and nr_out x
 *              struct out_record: the block writes and the output records
 *              the device model made since the previous checkpoint
 *   CK_END     nothing; no byte may follow
 *
 * Both ends run the same build: the vCPU and irqchip state are the KVM
 * structures as they are, and a version mismatch fails the link.
 */
#ifndef REPLICATOR_CKPT_H
#define REPLICATOR_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvm.h"

enum ck_sec_type {
	CK_VM = 1,
	CK_PAGES,
	CK_VCPU,
	CK_IRQ,
	CK_DEV,
	CK_END,
};

struct ck_sec {
	uint32_t type;
	uint32_t pad;
	uint64_t len;
};

struct ck_vm {
	uint64_t seq;
	uint64_t mem_size;
	uint32_t nr_vcpus;
	uint32_t full;		/* every non-zero page; the rest are zero */
	uint32_t tsc_khz;
	uint32_t pad;
};

struct ck_vcpu {
	uint32_t id;
	uint32_t pad;
	struct vcpu_state state;
};

struct ck_blk {
	uint64_t sector;	/* of the whole device */
	uint8_t data[ABI_SECTOR_SIZE];
};

/*
 * ck_dev.flags: the output records may not have reached the observer
 * (held in a plug qdisc, or not yet acknowledged by its TCP), so a
 * secondary that takes over from this checkpoint sends them again.
 */
#define CK_DEV_OUTPUT_HELD	(1U << 0)

struct ck_dev {
	uint32_t nr_blk;
	uint32_t nr_out;
	uint32_t flags;
	uint32_t pad;
};

#define CK_MAX_BLK	(64 * MAX_VCPUS)
#define CK_MAX_OUT	(64 * MAX_VCPUS)

/* A growing buffer that a checkpoint is built in. */
struct ck_buf {
	uint8_t *p;
	size_t len;
	size_t cap;
};

void ck__reset(struct ck_buf *b);
void ck__add_vm(struct ck_buf *b, const struct ck_vm *vm);
void ck__add_pages(struct ck_buf *b, const uint8_t *mem,
		   const uint64_t *gfns, size_t n);
void ck__add_vcpu(struct ck_buf *b, unsigned int id,
		  const struct vcpu_state *s);
void ck__add_irq(struct ck_buf *b, const struct irq_state *irq);
void ck__add_dev(struct ck_buf *b, const struct ck_blk *blk, uint32_t nr_blk,
		 const struct out_record *out, uint32_t nr_out, uint32_t flags);
void ck__add_end(struct ck_buf *b);

/* What the secondary holds: the last checkpoint it applied. */
struct replica {
	bool valid;		/* a full checkpoint and all after it applied */
	bool lost;		/* a block write and its undo failed: for good */
	uint64_t seq;
	uint64_t mem_size;
	uint32_t nr_vcpus;
	uint32_t tsc_khz;
	uint8_t *mem;
	struct vcpu_state vcpu[MAX_VCPUS];
	struct irq_state irq;
	int blk_fd;		/* the secondary's copy of the block device */
	struct out_record out[CK_MAX_OUT];	/* to send again on takeover */
	uint32_t nr_out;
	uint64_t blk_sectors;
	/*
	 * A VM on this host, never run before a takeover, on the replica's
	 * memory: each checkpoint's vCPU and irqchip state is loaded into
	 * it before the checkpoint is acknowledged, so that KVM itself
	 * checks what it would be given at takeover.  NULL: no KVM (the
	 * parser's tests).
	 */
	struct vm *shadow;
};

int replica__init(struct replica *r, uint64_t mem_size, uint32_t nr_vcpus,
		  int blk_fd, uint64_t blk_sectors);
/*
 * Check a whole checkpoint, the one the message numbered seq carries, then
 * apply it.  Returns 0; or -EBADMSG (the checkpoint is wrong, or could not
 * be resumed), -EIO (the replica's block device failed) or -ENOMEM, with
 * *why saying what was wrong, and then nothing of it was applied.  Only
 * if a block write and its undo both fail is the replica lost: then
 * r->valid is false, r->lost true, *why says so, and every later
 * checkpoint is refused.
 *
 * With a shadow VM, KVM must take every vCPU's state and the irqchip's
 * too, or the checkpoint is refused ("KVM refused ...") and the shadow
 * gets the last good state back.
 *
 * Once the replica holds one, a checkpoint must be the next after it
 * (seq + 1, no gap), a full one too: a full checkpoint carries all memory
 * but only its own epoch's block writes.  Every check has its own
 * reason (test/fuzz.c holds a case for each).
 */
int replica__apply(struct replica *r, const uint8_t *buf, size_t len,
		   uint64_t seq, const char **why);

#endif /* REPLICATOR_CKPT_H */
