// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer entry points (scripts/run-fuzz.sh), built with clang,
 * AddressSanitizer and UndefinedBehaviorSanitizer:
 *
 *   FUZZ_CKPT  the checkpoint parser: the input is a series of up to 8
 *              records, each a u32 length, the u64 seq of its message and
 *              the checkpoint, applied in turn to a fresh replica
 *   FUZZ_WIRE  the wire layer and the parser behind it: the input is the
 *              byte stream a secondary reads from a plain link, and every
 *              checkpoint message that wire__recv() passes is applied; a
 *              custom mutator recomputes the frames' CRCs most of the
 *              time, as a hostile peer would
 *
 * Both also check the all-or-nothing rule: a checkpoint refused must leave
 * the replica exactly as it was (abort() otherwise, which libFuzzer
 * reports as a crash).  The seeds are checkpoints and frames the
 * replicator's own builders made (kemari-ft-test corpus).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ckpt.h"
#include "util.h"
#include "wire.h"

#define FT_MEM		(64 * PAGE_SIZE)
#define FT_VCPUS	2
#define FT_SECTORS	(FT_VCPUS * ABI_SECTORS_PER_VCPU)

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

static struct replica rep;
static int blk_fd = -1;

/* A fresh replica of the seeds' shape: 64 pages, two vCPUs, zero disk. */
static void ft__reset(void)
{
	if (blk_fd < 0) {
		blk_fd = memfd_create("kemari-fuzz-disk", 0);
		if (blk_fd < 0 ||
		    replica__init(&rep, FT_MEM, FT_VCPUS, blk_fd, FT_SECTORS))
			abort();
		prog_role = "fuzz";
	}
	memset(rep.mem, 0, FT_MEM);
	memset(rep.vcpu, 0, sizeof(rep.vcpu));
	memset(&rep.irq, 0, sizeof(rep.irq));
	memset(rep.out, 0, sizeof(rep.out));
	rep.valid = false;
	rep.lost = false;
	rep.seq = 0;
	/* As the handshake sets it: the seeds' builder's rate. */
	rep.tsc_khz = 1000000;
	rep.nr_out = 0;
	if (ftruncate(blk_fd, 0) ||
	    ftruncate(blk_fd, FT_SECTORS * ABI_SECTOR_SIZE))
		abort();
}

/* What the replica holds, copied: a refusal must leave all of it. */
static struct {
	uint8_t mem[FT_MEM];
	struct vcpu_state vcpu[FT_VCPUS];	/* replica__apply() writes no more */
	struct irq_state irq;
	struct out_record out[CK_MAX_OUT];
	uint64_t seq;
	uint32_t tsc_khz, nr_out;
	bool valid, lost;
	uint8_t disk[FT_SECTORS * ABI_SECTOR_SIZE];
} was, now;

static void ft__copy(typeof(was) *c)
{
	memcpy(c->mem, rep.mem, FT_MEM);
	memcpy(c->vcpu, rep.vcpu, sizeof(c->vcpu));
	c->irq = rep.irq;
	memcpy(c->out, rep.out, sizeof(c->out));
	c->seq = rep.seq;
	c->tsc_khz = rep.tsc_khz;
	c->nr_out = rep.nr_out;
	c->valid = rep.valid;
	c->lost = rep.lost;
	if (pread(blk_fd, c->disk, sizeof(c->disk), 0) != sizeof(c->disk))
		abort();
}

/* Apply one checkpoint; a refusal must change nothing. */
static void ft__apply(const uint8_t *p, size_t len, uint64_t seq)
{
	const char *why;

	ft__copy(&was);
	if (!replica__apply(&rep, p, len, seq, &why))
		return;
	ft__copy(&now);
	if (memcmp(&was, &now, sizeof(was))) {
		fprintf(stderr, "refused (%s) but the replica changed\n", why);
		abort();
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* The parser's refusals are logged by the secondary, not here. */
	ft__reset();
	return 0;
}

#ifdef FUZZ_CKPT
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned int n = 0;
	uint32_t len;
	uint64_t seq;

	ft__reset();
	/* At most 8: each costs a copy of the replica, and 8 reach all. */
	while (size >= 12 && n++ < 8) {
		memcpy(&len, data, 4);
		memcpy(&seq, data + 4, 8);
		data += 12;
		size -= 12;
		if (len > size)
			len = size;
		/* A copy of its own size, so ASan sees any read past it. */
		{
			uint8_t *ck = malloc(len ? len : 1);

			if (!ck)
				abort();
			memcpy(ck, data, len);
			ft__apply(ck, len, seq);
			free(ck);
		}
		data += len;
		size -= len;
	}
	return 0;
}
#endif

#ifdef FUZZ_WIRE
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wire_link l;
	struct msg_hdr h;
	uint8_t *buf = NULL;
	size_t cap = 0;
	int sv[2], n, sndbuf = 1 << 18;

	ft__reset();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	/*
	 * run-fuzz.sh caps inputs (-max_len, 128 KiB) below the buffer the
	 * kernel gives for this (twice sndbuf, within net.core.wmem_max).
	 */
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	if (size && write(sv[1], data, size) != (ssize_t)size)
		abort();
	close(sv[1]);
	wire__link_init(&l, sv[0]);
	for (n = 0; n < 8; n++) {
		int r = wire__recv(&l, &h, &buf, &cap, 1 << 20, 1000);

		if (r == WIRE_BAD_PAYLOAD)
			continue;	/* refused, the stream goes on */
		if (r)
			break;
		/* A copy of its own size, so ASan sees any read past it. */
		if (h.type == MSG_CKPT) {
			uint8_t *ck = malloc(h.len ? h.len : 1);

			if (!ck)
				abort();
			if (h.len)
				memcpy(ck, buf, h.len);
			ft__apply(ck, h.len, h.seq);
			free(ck);
		}
	}
	wire__link_close(&l);
	free(buf);
	return 0;
}

/* Walk the frames of a stream and recompute both CRCs of each. */
static void ft__reframe(uint8_t *p, size_t size)
{
	struct msg_hdr h;
	size_t off = 0;

	while (size - off >= sizeof(h)) {
		memcpy(&h, p + off, sizeof(h));
		if (h.len > size - off - sizeof(h))
			h.len = size - off - sizeof(h);
		h.magic = WIRE_MAGIC;
		h.version = WIRE_VERSION;
		h.crc = crc32c(0, p + off + sizeof(h), h.len);
		h.hdr_crc = crc32c(0, &h, offsetof(struct msg_hdr, hdr_crc));
		memcpy(p + off, &h, sizeof(h));
		off += sizeof(h) + h.len;
	}
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,
			       unsigned int seed)
{
	size = LLVMFuzzerMutate(data, size, max_size);
	if (seed % 4)
		ft__reframe(data, size);
	return size;
}
#endif
