/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The contract between the replicator's guest payload and its VMM: where
 * things are in guest physical memory, which ports do what, and the data
 * patterns both sides compute.  Included by the freestanding guest and by
 * the VMM, so it uses only fixed-width types and static inline helpers.
 *
 * Guest physical memory (identity-mapped by 2 MiB pages, 64-bit mode):
 *
 *   0x1000   PML4, 0x2000 PDPT, 0x3000 PD        (VMM, at start)
 *   0x4000   GDT                                   (VMM, at start)
 *   0x8000   struct guest_config                   (VMM, at start)
 *   0x9000   struct dev_status                     (device model)
 *   0xa000   struct mailbox, one page per vCPU     (guest)
 *   0x10000  struct vstate, one page per vCPU      (guest)
 *   0x20000  sector table, one page per vCPU       (guest)
 *   0x80000  stack tops, 64 KiB apart, downwards
 *   0x100000 code
 *   0x400000 data pages, data_pages per vCPU
 */
#ifndef KEMARI_GUEST_ABI_H
#define KEMARI_GUEST_ABI_H

#include <stdint.h>

#define ABI_MAX_VCPUS		4
#define ABI_PAGE_SIZE		4096ULL

#define ABI_PML4		0x1000ULL
#define ABI_GDT			0x4000ULL
#define ABI_CONFIG		0x8000ULL
#define ABI_STATUS		0x9000ULL
#define ABI_MAILBOX(id)		(0xa000ULL + (id) * ABI_PAGE_SIZE)
#define ABI_VSTATE(id)		(0x10000ULL + (id) * ABI_PAGE_SIZE)
#define ABI_SECTORS(id)		(0x20000ULL + (id) * ABI_PAGE_SIZE)
#define ABI_STACK_TOP(id)	(0x80000ULL - (id) * 0x10000ULL)
#define ABI_CODE		0x100000ULL
#define ABI_DATA		0x400000ULL

/*
 * Ports.  The doorbells (output, block, console) are ioeventfds: in-kernel,
 * so Kemari syncs before each takes effect, and each is replayed once
 * after a takeover.  The done port exits to the VMM; it tells the VMM the
 * guest is finished and is not output.
 */
#define ABI_PORT_OUTPUT(id)	(0x600 + (id))
#define ABI_PORT_BLOCK(id)	(0x610 + (id))
#define ABI_PORT_DONE		0x620
#define ABI_PORT_CONSOLE(id)	(0x630 + (id))

/* Console: one line per doorbell, without its newline. */
#define ABI_CONSOLE_LINE	240

/* Block device: each vCPU owns ABI_SECTORS_PER_VCPU sectors of its own. */
#define ABI_SECTOR_SIZE		512
#define ABI_SECTORS_PER_VCPU	64

#define ABI_CONFIG_MAGIC	0x4b454d41u	/* "KEMA" */
#define ABI_RECORD_MAGIC	0x5245434fu	/* "RECO" */

struct guest_config {
	uint32_t magic;
	uint32_t nr_vcpus;
	uint32_t records;		/* output records per vCPU, then done */
	uint32_t pages_per_record;	/* data pages rewritten per record */
	uint32_t data_pages;		/* data pages per vCPU */
	uint32_t block_every;		/* a block write every N records; 0: none */
	uint64_t seed;
};

/* Written by the device model only: completion counters. */
struct dev_status {
	uint64_t emitted[ABI_MAX_VCPUS];	/* output records sent */
	uint64_t blk_done[ABI_MAX_VCPUS];	/* block writes done */
	uint64_t con_done[ABI_MAX_VCPUS];	/* console lines printed */
};

/* One output record; the observer receives it as is. */
struct out_record {
	uint32_t magic;
	uint32_t vcpu;
	uint64_t seq;
	uint64_t tsc;
	uint64_t checks;
	uint32_t check_errors;
	uint32_t tsc_errors;
};

struct blk_request {
	uint64_t sector;	/* within this vCPU's sectors */
	uint64_t seq;
	uint8_t data[ABI_SECTOR_SIZE];
};

struct con_line {
	uint64_t seq;
	uint32_t len;		/* the VMM prints at most ABI_CONSOLE_LINE */
	char text[ABI_CONSOLE_LINE];
};

struct mailbox {
	struct out_record rec;
	uint8_t pad[0x800 - sizeof(struct out_record)];
	struct blk_request blk;
	uint8_t pad2[0x400 - sizeof(struct blk_request)];
	struct con_line con;
};

struct vstate {
	uint64_t rng;
	uint64_t seq;		/* next record */
	uint64_t last_tsc;
	uint64_t checks;	/* pages verified */
	uint64_t check_errors;
	uint64_t tsc_errors;
	uint64_t initialised;
	uint64_t con_seq;	/* next console line */
};

/*
 * The sector table: for each of the vCPU's sectors, 1 + the seq of the
 * block write the guest saw complete last, or 0 if none.
 */

static inline uint64_t abi_mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static inline uint64_t abi_rng(uint64_t *state)
{
	*state += 0x9e3779b97f4a7c15ULL;
	return abi_mix(*state);
}

/* Word i of the sector that vCPU vcpu wrote as block write number seq. */
static inline uint64_t abi_sector_word(uint32_t vcpu, uint64_t sector,
				       uint64_t seq, unsigned int i)
{
	return abi_mix(((uint64_t)vcpu << 56) ^ (sector << 40) ^ (seq << 8) ^ i);
}

#endif /* KEMARI_GUEST_ABI_H */
