// SPDX-License-Identifier: GPL-2.0-only
/*
 * The checkpoint parser's tests: no KVM, no network, no root.
 *
 *   checks  one case for every reason replica__apply() can refuse a
 *           checkpoint: each must be refused with that reason, and leave
 *           the replica as it was; then a good checkpoint still applies
 *           (scripts/check-mutants.sh deletes each check in turn and
 *           expects a case here to fail)
 *   fuzz    random damage, on the wire and after it (a sender that
 *           computes the CRC after the damage): each refused, the
 *           replica unchanged and able to apply the next
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt.h"
#include "test/ft.h"
#include "util.h"
#include "wire.h"

#define FZ_MEM		(64 * PAGE_SIZE)
#define FZ_VCPUS	2
#define FZ_SECTORS	(FZ_VCPUS * ABI_SECTORS_PER_VCPU)

static void fz__build(struct ck_buf *b, uint64_t seq, bool full,
		      unsigned int nr_pages, unsigned int nr_blk,
		      unsigned int nr_out)
{
	static uint8_t mem[FZ_MEM];
	struct ck_vm vm = {
		.seq = seq, .mem_size = FZ_MEM, .nr_vcpus = FZ_VCPUS,
		.full = full, .tsc_khz = 1000000,
	};
	uint64_t gfns[FZ_MEM / PAGE_SIZE];
	struct ck_blk blk[4];
	struct out_record out = { 0 };
	struct vcpu_state s;
	struct irq_state irq;
	unsigned int i;

	for (i = 0; i < sizeof(mem) / 8; i++)
		((uint64_t *)mem)[i] = rnd();
	for (i = 0; i < nr_pages; i++)
		gfns[i] = rnd() % (FZ_MEM / PAGE_SIZE);
	ck__reset(b);
	ck__add_vm(b, &vm);
	ck__add_pages(b, mem, gfns, nr_pages);
	for (i = 0; i < FZ_VCPUS; i++) {
		unsigned int m;

		memset(&s, 0, sizeof(s));
		s.regs.rip = rnd();
		s.msrs.hdr.nmsrs = NR_SAVED_MSRS;
		for (m = 0; m < NR_SAVED_MSRS; m++) {
			s.msrs.entries[m].index = vcpu__saved_msr(m);
			s.msrs.entries[m].data = rnd();
		}
		if (i) {
			s.pending.write.count = 1;
			s.pending.write.len = 4;
			s.pending.write.bus = KVM_KEMARI_BUS_PIO;
			s.pending.write.addr = ABI_PORT_OUTPUT(i);
		}
		ck__add_vcpu(b, i, &s);
	}
	memset(&irq, 0x5a, sizeof(irq));
	for (i = 0; i < 3; i++)
		irq.chip[i].chip_id = i;
	ck__add_irq(b, &irq);
	for (i = 0; i < nr_blk; i++) {
		blk[i].sector = rnd() % FZ_SECTORS;
		memset(blk[i].data, rnd(), sizeof(blk[i].data));
	}
	out.magic = ABI_RECORD_MAGIC;
	out.vcpu = rnd() % FZ_VCPUS;
	out.seq = seq;
	ck__add_dev(b, blk, nr_blk, &out, nr_out, CK_DEV_OUTPUT_HELD);
	ck__add_end(b);
}

/*
 * Everything the replica holds, hashed: memory, vCPUs, irqchip, disk, the
 * held output records and every scalar.
 */
static uint32_t fz__digest(const struct replica *r)
{
	uint8_t disk[FZ_SECTORS * ABI_SECTOR_SIZE];
	uint32_t c;

	if (pread(r->blk_fd, disk, sizeof(disk), 0) != sizeof(disk))
		die("reading the fuzz disk: %m");
	c = crc32c(0, r->mem, r->mem_size);
	c = crc32c(c, r->vcpu, sizeof(r->vcpu));
	c = crc32c(c, &r->irq, sizeof(r->irq));
	c = crc32c(c, &r->seq, sizeof(r->seq));
	c = crc32c(c, &r->valid, sizeof(r->valid));
	c = crc32c(c, &r->tsc_khz, sizeof(r->tsc_khz));
	c = crc32c(c, &r->nr_out, sizeof(r->nr_out));
	c = crc32c(c, r->out, sizeof(r->out));
	return crc32c(c, disk, sizeof(disk));
}

/* Offsets of the section headers of a checkpoint built by fz__build(). */
static unsigned int fz__sections(const struct ck_buf *b, size_t *off)
{
	unsigned int n = 0;
	size_t o = 0;

	while (o < b->len) {
		struct ck_sec s;

		memcpy(&s, b->p + o, sizeof(s));
		off[n++] = o;
		o += sizeof(s) + ((s.len + 7) & ~7ULL);
	}
	return n;
}

/*
 * A structural corruption that keeps the CRC right (the sender computes
 * it after the damage): the checks of replica__apply() must catch it.
 */
static const char *fz__structural(struct ck_buf *b, size_t *len)
{
	size_t off[16] = { 0 }, o;
	unsigned int n = fz__sections(b, off), k = rnd() % n;
	struct ck_sec s;
	uint64_t v;

	memcpy(&s, b->p + off[k], sizeof(s));
	o = off[k] + sizeof(s);
	switch (rnd() % 12) {
	case 0:
		*len = rnd() % b->len;
		return "truncated";
	case 1:
		s.type = CK_END + 1 + rnd() % 1000;
		break;
	case 2:
		s.len += 1 + rnd() % 4096;
		break;
	case 3:
		s.len = s.len ? s.len - 1 - rnd() % s.len : 8;
		break;
	case 4:		/* a page beyond memory */
		o = off[1] + sizeof(s) + 8;
		v = FZ_MEM / PAGE_SIZE + rnd() % 1000000;
		memcpy(b->p + o, &v, 8);
		return "page beyond memory";
	case 5:		/* page count */
		o = off[1] + sizeof(s);
		memcpy(&v, b->p + o, 8);
		v += rnd() % 2 ? rnd() | 1 : 1 + rnd() % 3;
		memcpy(b->p + o, &v, 8);
		return "page count";
	case 6:		/* vCPU id */
		memcpy(b->p + off[2] + sizeof(s), &(uint32_t){ 1 + rnd() % 7 }, 4);
		return "vcpu id";
	case 7:		/* sequence not after the replica's */
		memcpy(b->p + off[0] + sizeof(s), &(uint64_t){ rnd() % 2 }, 8);
		return "old sequence";
	case 8:		/* VM shape */
		memcpy(b->p + off[0] + sizeof(s) + 8 + 8 * (rnd() % 2),
		       &(uint32_t){ 3 + rnd() % 5 }, 4);
		return "vm shape";
	case 9:		/* block write beyond the device */
		o = off[n - 2] + sizeof(s);
		v = ((struct ck_dev *)(b->p + o))->nr_blk;
		if (!v) {
			memcpy(b->p + o, &(uint32_t){ 1 + rnd() % 100 }, 4);
			return "block count";
		}
		/* The first block write's sector, after struct ck_dev. */
		memcpy(b->p + o + sizeof(struct ck_dev),
		       &(uint64_t){ FZ_SECTORS + rnd() % 100 }, 8);
		return "sector beyond device";
	case 10:	/* bytes after the end */
		*len = b->len + 8;
		return "trailing bytes";
	default:	/* a section dropped */
		memmove(b->p + off[k], b->p + (k + 1 < n ? off[k + 1] : b->len),
			b->len - (k + 1 < n ? off[k + 1] : b->len));
		*len = b->len - ((k + 1 < n ? off[k + 1] : b->len) - off[k]);
		return "section dropped";
	}
	memcpy(b->p + off[k], &s, sizeof(s));
	return "section header";
}

/* Frame a checkpoint, damage the frame, and receive it the real way. */
static int fz__over_wire(const uint8_t *p, size_t len, uint64_t seq,
			 size_t cut,
			 unsigned int flips, struct msg_hdr *h,
			 uint8_t **buf, size_t *cap)
{
	size_t total = sizeof(struct msg_hdr) + len;
	uint8_t *frame = malloc(total);
	struct wire_link l;
	int sv[2], r;
	pid_t pid;

	if (!frame || socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		die("fuzz: %m");
	wire__header((struct msg_hdr *)frame, MSG_CKPT, seq, p, len);
	memcpy(frame + sizeof(struct msg_hdr), p, len);
	while (flips--)
		frame[rnd() % total] ^= 1 + rnd() % 255;
	if (cut < total)
		total = cut;
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		_exit(write(sv[1], frame, total) != (ssize_t)total);
	}
	close(sv[1]);
	wire__link_init(&l, sv[0]);
	r = wire__recv(&l, h, buf, cap, 1 << 24, 5000);
	wire__link_close(&l);
	waitpid(pid, NULL, 0);
	free(frame);
	return r;
}

/*
 * A replica on a zeroed disk of its own, holding a good full checkpoint
 * (seq 1, built in b); returns the disk's fd.
 */
static int fz__replica(struct replica *r, struct ck_buf *b, const char *name)
{
	char path[PATH_MAX];
	const char *why;
	int fd;

	snprintf(path, sizeof(path), "%s/%s.img", dir, name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, FZ_SECTORS * ABI_SECTOR_SIZE) ||
	    replica__init(r, FZ_MEM, FZ_VCPUS, fd, FZ_SECTORS))
		die("%s set-up: %m", name);
	fz__build(b, 1, true, 20, 2, 1);
	if (replica__apply(r, b->p, b->len, 1, &why))
		die("a good full checkpoint was refused: %s", why);
	return fd;
}

void test_fuzz(unsigned int cases)
{
	struct ck_buf good = { 0 }, bad = { 0 };
	unsigned int i, wrong = 0, refused_wire = 0, refused_apply = 0;
	struct replica r;
	uint8_t *buf = NULL;
	size_t cap = 0;
	uint32_t before;
	const char *why, *what;
	struct msg_hdr h;
	int fd, ret;

	fd = fz__replica(&r, &good, "fuzz");

	for (i = 0; i < cases; i++) {
		size_t len;

		fz__build(&good, r.seq + 1, false, 1 + rnd() % 6, rnd() % 4,
			  rnd() % 2);
		before = fz__digest(&r);
		if (i % 2) {
			/* Random damage on the wire: CRCs and framing. */
			size_t total = sizeof(struct msg_hdr) + good.len;
			unsigned int flips = rnd() % 3 ? 1 + rnd() % 8 : 0;
			size_t cut = flips && rnd() % 2 ? total : rnd() % total;

			ret = fz__over_wire(good.p, good.len, r.seq + 1, cut,
					    flips, &h,
					    &buf, &cap);
			what = flips ? "bytes flipped" : "stream truncated";
			if (ret == WIRE_OK)
				ret = replica__apply(&r, buf, h.len, h.seq, &why);
			else
				refused_wire++;
		} else {
			bad.p = realloc(bad.p, good.len + 8);
			memcpy(bad.p, good.p, good.len);
			memset(bad.p + good.len, 0, 8);
			bad.len = len = good.len;
			what = fz__structural(&bad, &len);
			ret = replica__apply(&r, bad.p, len, r.seq + 1, &why);
			refused_apply += !!ret;
		}
		if (!ret || fz__digest(&r) != before) {
			wrong++;
			diag("fuzz case %u (%s): %s", i, what,
			     ret ? "replica changed" : "accepted");
		}
		/* The next good checkpoint still applies. */
		if (i % 25 == 24) {
			fz__build(&good, r.seq + 1, false, 3, 1, 1);
			if (replica__apply(&r, good.p, good.len, r.seq + 1, &why)) {
				wrong++;
				diag("good checkpoint after case %u refused: %s",
				     i, why);
			}
		}
	}
	tap(!wrong, "fuzz: %u corrupt or truncated checkpoints (%u caught by the link, %u by the checks), %u accepted or changed the replica",
	    cases, refused_wire, refused_apply, wrong);
	close(fd);
}

/* ------------------------------------------------------------- checks */

/* The sections of fz__build(&b, seq, false, 3, 2, 1), in order. */
enum { S_VM, S_PAGES, S_VCPU0, S_VCPU1, S_IRQ, S_DEV, S_END, S_NR };

static size_t ck_off[16];

static struct ck_sec *sec(struct ck_buf *b, unsigned int k)
{
	return (struct ck_sec *)(b->p + ck_off[k]);
}

static void *body(struct ck_buf *b, unsigned int k)
{
	return b->p + ck_off[k] + sizeof(struct ck_sec);
}

static struct ck_vm *vm_of(struct ck_buf *b)
{
	return body(b, S_VM);
}

static struct kvm_kemari_write *write_of(struct ck_buf *b)
{
	return &((struct ck_vcpu *)body(b, S_VCPU1))->state.pending.write;
}

static struct ck_dev *dev_of(struct ck_buf *b)
{
	return body(b, S_DEV);
}

static struct ck_blk *blk_of(struct ck_buf *b)
{
	return (struct ck_blk *)(dev_of(b) + 1);
}

static struct out_record *out_of(struct ck_buf *b)
{
	return (struct out_record *)(blk_of(b) + dev_of(b)->nr_blk);
}

enum ck_case {
	C_NO_END_SECTION,
	C_SECTION_PAST_THE_END,
	C_SECTION_HEADER_PADDING,
	C_SECTIONS_OUT_OF_ORDER,
	C_UNKNOWN_SECTION_TYPE,
	C_VM_SECTION_SIZE,
	C_VM_VCPU_COUNT,
	C_VM_MEMORY_SIZE,
	C_VM_PADDING,
	C_VM_FULL_FLAG,
	C_HEADER_SEQ_NOT_THE_BODY_S,
	C_INCREMENTAL_FIRST,
	C_SEQUENCE_REPEATED,
	C_SEQUENCE_GAP,
	C_FULL_CHECKPOINT_AFTER_A_GAP,
	C_A_REPLICA_WHOSE_DISK_IS_LOST,
	C_TSC_FREQUENCY,
	C_PAGE_SECTION_SIZE,
	C_PAGE_COUNT,
	C_PAGE_COUNT_ABOVE_MEMORY,
	C_PAGE_BEYOND_MEMORY,
	C_VCPU_SECTION_SIZE,
	C_VCPU_ID,
	C_VCPU_PADDING,
	C_MSR_COUNT,
	C_MSR_LIST,
	C_PENDING_WRITE_FLAGS,
	C_PENDING_WRITE_WITH_NO_COUNT,
	C_PENDING_PIO_SIZE_3,
	C_PENDING_PIO_PORT_0XFFFE_4_BYTES,
	C_PENDING_PIO_PORT_0X10000,
	C_PENDING_PIO_PORT_MAX_WHOSE_END_WRAPS_TO,
	C_PENDING_PIO_1025_DWORDS,
	C_PENDING_MMIO_COUNT_2,
	C_PENDING_MMIO_WRAP,
	C_PENDING_MMIO_4097_BYTES,
	C_PENDING_WRITE_BUS,
	C_IRQCHIP_SECTION_SIZE,
	C_IRQCHIP_IDS,
	C_DEVICE_SECTION_SIZE,
	C_DEVICE_FLAGS,
	C_DEVICE_PADDING,
	C_DEVICE_RECORD_COUNT,
	C_DEVICE_BLOCK_COUNT_ABOVE_THE_LIMIT,
	C_SECTOR_BEYOND_THE_DEVICE,
	C_OUTPUT_RECORD_MAGIC,
	C_OUTPUT_RECORD_VCPU,
	C_BYTES_AFTER_THE_END,
	C_END_SECTION_WITH_A_BODY,
	C_DISK_FAILS_AT_THE_SECOND_WRITE,
	C_NR
};

/*
 * Each case: what it damages, and the reason replica__apply() must give.
 * ck__damage() does the damage.
 */
static const struct {
	const char *name, *why;
} ck_cases[C_NR] = {
	[C_NO_END_SECTION] = { "no end section",
		"truncated: no end section" },
	[C_SECTION_PAST_THE_END] = { "section past the end",
		"section longer than the checkpoint" },
	[C_SECTION_HEADER_PADDING] = { "section header padding",
		"section longer than the checkpoint" },
	[C_SECTIONS_OUT_OF_ORDER] = { "sections out of order",
		"section missing or out of order" },
	[C_UNKNOWN_SECTION_TYPE] = { "unknown section type",
		"section missing or out of order" },
	[C_VM_SECTION_SIZE] = { "VM section size",
		"VM section has the wrong size" },
	[C_VM_VCPU_COUNT] = { "VM vCPU count",
		"VM shape differs from the replica's" },
	[C_VM_MEMORY_SIZE] = { "VM memory size",
		"VM shape differs from the replica's" },
	[C_VM_PADDING] = { "VM padding",
		"VM section has reserved bits set" },
	[C_VM_FULL_FLAG] = { "VM full flag",
		"VM section has reserved bits set" },
	[C_HEADER_SEQ_NOT_THE_BODY_S] = { "header seq not the body's",
		"the message's sequence number is not the checkpoint's" },
	[C_INCREMENTAL_FIRST] = { "incremental first",
		"first checkpoint is not a full one" },
	[C_SEQUENCE_REPEATED] = { "sequence repeated",
		"checkpoint sequence went back" },
	[C_SEQUENCE_GAP] = { "sequence gap",
		"sequence gap: a checkpoint must follow the replica's" },
	[C_FULL_CHECKPOINT_AFTER_A_GAP] = { "full checkpoint after a gap",
		"sequence gap: a checkpoint must follow the replica's" },
	[C_A_REPLICA_WHOSE_DISK_IS_LOST] = { "a replica whose disk is lost",
		"the replica's disk is lost: this secondary must be replaced" },
	[C_TSC_FREQUENCY] = { "TSC frequency",
		"the guest's TSC frequency changed" },
	[C_PAGE_SECTION_SIZE] = { "page section size",
		"page section too short" },
	[C_PAGE_COUNT] = { "page count",
		"page count does not match the section" },
	[C_PAGE_COUNT_ABOVE_MEMORY] = { "page count above memory",
		"page count does not match the section" },
	[C_PAGE_BEYOND_MEMORY] = { "page beyond memory",
		"page beyond guest memory" },
	[C_VCPU_SECTION_SIZE] = { "vCPU section size",
		"vCPU section has the wrong size" },
	[C_VCPU_ID] = { "vCPU id",
		"vCPU sections out of order" },
	[C_VCPU_PADDING] = { "vCPU padding",
		"vCPU sections out of order" },
	[C_MSR_COUNT] = { "MSR count",
		"vCPU MSR count is wrong" },
	[C_MSR_LIST] = { "MSR list",
		"vCPU MSR list is wrong" },
	[C_PENDING_WRITE_FLAGS] = { "pending write flags",
		"pending write has reserved flags set" },
	[C_PENDING_WRITE_WITH_NO_COUNT] = { "pending write with no count",
		"pending write has no count but names a device" },
	[C_PENDING_PIO_SIZE_3] = { "pending PIO size 3",
		"pending PIO write has a bad size" },
	[C_PENDING_PIO_PORT_0XFFFE_4_BYTES] = { "pending PIO port 0xfffe, 4 bytes",
		"pending PIO write runs past port 0xffff" },
	[C_PENDING_PIO_PORT_0X10000] = { "pending PIO port 0x10000",
		"pending PIO write runs past port 0xffff" },
	[C_PENDING_PIO_PORT_MAX_WHOSE_END_WRAPS_TO] = { "pending PIO port 2^64 - 1, whose end wraps to 0",
		"pending PIO write runs past port 0xffff" },
	[C_PENDING_PIO_1025_DWORDS] = { "pending PIO 1025 dwords",
		"pending PIO write is longer than KVM holds" },
	[C_PENDING_MMIO_COUNT_2] = { "pending MMIO count 2",
		"pending MMIO write is not one access" },
	[C_PENDING_MMIO_WRAP] = { "pending MMIO wrap",
		"pending MMIO write wraps around" },
	[C_PENDING_MMIO_4097_BYTES] = { "pending MMIO 4097 bytes",
		"pending MMIO write is longer than KVM holds" },
	[C_PENDING_WRITE_BUS] = { "pending write bus",
		"pending write is on an unknown bus" },
	[C_IRQCHIP_SECTION_SIZE] = { "irqchip section size",
		"irqchip section has the wrong size" },
	[C_IRQCHIP_IDS] = { "irqchip ids",
		"irqchip section is malformed" },
	[C_DEVICE_SECTION_SIZE] = { "device section size",
		"device section too short" },
	[C_DEVICE_FLAGS] = { "device flags",
		"device section has reserved bits set" },
	[C_DEVICE_PADDING] = { "device padding",
		"device section has reserved bits set" },
	[C_DEVICE_RECORD_COUNT] = { "device record count",
		"device log counts do not match" },
	[C_DEVICE_BLOCK_COUNT_ABOVE_THE_LIMIT] = { "device block count above the limit",
		"device log counts do not match" },
	[C_SECTOR_BEYOND_THE_DEVICE] = { "sector beyond the device",
		"block write beyond the device" },
	[C_OUTPUT_RECORD_MAGIC] = { "output record magic",
		"output record is malformed" },
	[C_OUTPUT_RECORD_VCPU] = { "output record vCPU",
		"output record is malformed" },
	[C_BYTES_AFTER_THE_END] = { "bytes after the end",
		"bytes after the end section" },
	[C_END_SECTION_WITH_A_BODY] = { "end section with a body",
		"bytes after the end section" },
	[C_DISK_FAILS_AT_THE_SECOND_WRITE] = { "disk fails at the second write",
		"cannot write the replica's block device" },
};

/*
 * The damage of case k, to the good checkpoint b and to what comes with
 * it: the length, the message's seq, the replica.
 */
static void ck__damage(enum ck_case k, struct ck_buf *b, size_t *len,
		       uint64_t *seq, struct replica *r)
{
	struct rlimit rl = { .rlim_cur = 8 * ABI_SECTOR_SIZE,
			     .rlim_max = RLIM_INFINITY };

	switch (k) {
	case C_NO_END_SECTION:
		*len = ck_off[S_END];
		break;
	case C_SECTION_PAST_THE_END:
		sec(b, S_PAGES)->len += 1 << 20;
		break;
	case C_SECTION_HEADER_PADDING:
		sec(b, S_IRQ)->pad = 1;
		break;
	case C_SECTIONS_OUT_OF_ORDER:
		sec(b, S_PAGES)->type = CK_VCPU;
		break;
	case C_UNKNOWN_SECTION_TYPE:
		sec(b, S_DEV)->type = CK_END + 1;
		break;
	case C_VM_SECTION_SIZE:
		sec(b, S_VM)->len -= 8;
		break;
	case C_VM_VCPU_COUNT:
		vm_of(b)->nr_vcpus = FZ_VCPUS + 1;
		break;
	case C_VM_MEMORY_SIZE:
		vm_of(b)->mem_size += PAGE_SIZE;
		break;
	case C_VM_PADDING:
		vm_of(b)->pad = 1;
		break;
	case C_VM_FULL_FLAG:
		vm_of(b)->full = 2;
		break;
	case C_HEADER_SEQ_NOT_THE_BODY_S:
		*seq += 1;
		break;
	case C_INCREMENTAL_FIRST:
		r->valid = false;
		break;
	case C_SEQUENCE_REPEATED:
		*seq = vm_of(b)->seq = r->seq;
		break;
	case C_SEQUENCE_GAP:
		*seq = vm_of(b)->seq = r->seq + 999;
		break;
	case C_FULL_CHECKPOINT_AFTER_A_GAP:
		*seq = vm_of(b)->seq = r->seq + 999;
		vm_of(b)->full = 1;
		break;
	case C_A_REPLICA_WHOSE_DISK_IS_LOST:
		r->lost = true;
		break;
	case C_TSC_FREQUENCY:
		vm_of(b)->tsc_khz += 1;
		break;
	case C_PAGE_SECTION_SIZE:
		sec(b, S_PAGES)->len = 4;
		break;
	case C_PAGE_COUNT:
		*(uint64_t *)body(b, S_PAGES) += 1;
		break;
	case C_PAGE_COUNT_ABOVE_MEMORY:
		*(uint64_t *)body(b, S_PAGES) = FZ_MEM / PAGE_SIZE + 1;
		break;
	case C_PAGE_BEYOND_MEMORY:
		((uint64_t *)body(b, S_PAGES))[1] = FZ_MEM / PAGE_SIZE;
		break;
	case C_VCPU_SECTION_SIZE:
		sec(b, S_VCPU0)->len -= 8;
		break;
	case C_VCPU_ID:
		((struct ck_vcpu *)body(b, S_VCPU0))->id = 1;
		break;
	case C_VCPU_PADDING:
		((struct ck_vcpu *)body(b, S_VCPU1))->pad = 1;
		break;
	case C_MSR_COUNT:
		((struct ck_vcpu *)body(b, S_VCPU0))->state.msrs.hdr.nmsrs--;
		break;
	case C_MSR_LIST:
		((struct ck_vcpu *)body(b, S_VCPU1))->state.msrs.entries[3].index ^= 1;
		break;
	case C_PENDING_WRITE_FLAGS:
		write_of(b)->flags = 1;
		break;
	case C_PENDING_WRITE_WITH_NO_COUNT:
		write_of(b)->count = 0;
		break;
	case C_PENDING_PIO_SIZE_3:
		write_of(b)->len = 3;
		break;
	case C_PENDING_PIO_PORT_0XFFFE_4_BYTES:
		write_of(b)->addr = 0xfffe;
		break;
	case C_PENDING_PIO_PORT_0X10000:
		write_of(b)->addr = 0x10000;
		write_of(b)->len = 1;
		break;
	case C_PENDING_PIO_PORT_MAX_WHOSE_END_WRAPS_TO:
		write_of(b)->addr = ~0ULL;
		write_of(b)->len = 1;
		break;
	case C_PENDING_PIO_1025_DWORDS:
		write_of(b)->count = KVM_KEMARI_MAX_DATA / 4 + 1;
		break;
	case C_PENDING_MMIO_COUNT_2:
		write_of(b)->bus = KVM_KEMARI_BUS_MMIO;
		write_of(b)->count = 2;
		break;
	case C_PENDING_MMIO_WRAP:
		write_of(b)->bus = KVM_KEMARI_BUS_MMIO;
		write_of(b)->addr = ~0ULL - 1;
		break;
	case C_PENDING_MMIO_4097_BYTES:
		write_of(b)->bus = KVM_KEMARI_BUS_MMIO;
		write_of(b)->len = KVM_KEMARI_MAX_DATA + 1;
		break;
	case C_PENDING_WRITE_BUS:
		write_of(b)->bus = KVM_KEMARI_BUS_PIO + 1;
		break;
	case C_IRQCHIP_SECTION_SIZE:
		sec(b, S_IRQ)->len -= 8;
		break;
	case C_IRQCHIP_IDS:
		((struct irq_state *)body(b, S_IRQ))->chip[1].chip_id = 0;
		break;
	case C_DEVICE_SECTION_SIZE:
		sec(b, S_DEV)->len = 8;
		break;
	case C_DEVICE_FLAGS:
		dev_of(b)->flags |= 2;
		break;
	case C_DEVICE_PADDING:
		dev_of(b)->pad = 1;
		break;
	case C_DEVICE_RECORD_COUNT:
		dev_of(b)->nr_out++;
		break;
	case C_DEVICE_BLOCK_COUNT_ABOVE_THE_LIMIT:
		dev_of(b)->nr_blk = CK_MAX_BLK + 1;
		break;
	case C_SECTOR_BEYOND_THE_DEVICE:
		blk_of(b)[1].sector = FZ_SECTORS;
		break;
	case C_OUTPUT_RECORD_MAGIC:
		out_of(b)->magic ^= 1;
		break;
	case C_OUTPUT_RECORD_VCPU:
		out_of(b)->vcpu = FZ_VCPUS;
		break;
	case C_BYTES_AFTER_THE_END:
		*len += 8;
		break;
	case C_END_SECTION_WITH_A_BODY:
		sec(b, S_END)->len = 8;
		*len += 8;
		break;
	case C_DISK_FAILS_AT_THE_SECOND_WRITE:
		/*
		 * The disk fails at the second of two writes (RLIMIT_FSIZE
		 * below the second sector): the first must be undone.
		 */
		blk_of(b)[0].sector = 1;
		blk_of(b)[1].sector = 9;
		signal(SIGXFSZ, SIG_IGN);
		if (setrlimit(RLIMIT_FSIZE, &rl))
			die("setrlimit: %m");
		break;
	case C_NR:
		break;
	}
}

void test_checks(void)
{
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
	struct ck_buf b = { 0 };
	struct replica r;
	const char *why;
	unsigned int i;
	uint32_t before;
	bool valid, ok;
	uint64_t seq;
	size_t len;
	int fd, ret;

	fd = fz__replica(&r, &b, "checks");

	for (i = 0; i < C_NR; i++) {
		fz__build(&b, r.seq + 1, false, 3, 2, 1);
		if (fz__sections(&b, ck_off) != S_NR)
			die("checks: the good checkpoint has the wrong shape");
		/* Room for the trailing bytes of two cases. */
		if (b.cap < b.len + 8)
			die("checks: no room after the checkpoint");
		memset(b.p + b.len, 0, 8);
		len = b.len;
		seq = r.seq + 1;
		before = fz__digest(&r);
		valid = r.valid;
		ck__damage(i, &b, &len, &seq, &r);
		ret = replica__apply(&r, b.p, len, seq, &why);
		setrlimit(RLIMIT_FSIZE, &rl);
		r.valid = valid;
		r.lost = false;
		ok = ret && !strcmp(why, ck_cases[i].why) &&
		     fz__digest(&r) == before;
		tap(ok, "checks: %s is refused, \"%s\", and the replica kept%s%s",
		    ck_cases[i].name, ck_cases[i].why, ok ? "" : "; got: ",
		    ok ? "" : ret ? why : "accepted");
		if (!ret || fz__digest(&r) != before) {
			/* Start again from a good full checkpoint. */
			fz__build(&b, r.seq + 1, true, 20, 2, 1);
			replica__apply(&r, b.p, b.len, r.seq + 1, &why);
		}
	}
	fz__build(&b, r.seq + 1, false, 3, 2, 1);
	ret = replica__apply(&r, b.p, b.len, r.seq + 1, &why);
	tap(!ret, "checks: the next good checkpoint still applies%s%s",
	    ret ? ": " : "", ret ? why : "");
	close(fd);
	free(b.p);
}

/* ------------------------------------------------------------- corpus */

static void corpus__write(const char *dir_, const char *name,
			  const void *p, size_t len)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir_, name);
	f = fopen(path, "w");
	if (!f || fwrite(p, 1, len, f) != len || fclose(f))
		die("corpus: %s: %m", path);
}

/*
 * Seeds for the coverage-guided fuzzers (test/fuzz_target.c), made by the
 * replicator's own builders: in out/ckpt, series of checkpoints as
 * FUZZ_CKPT reads them (u32 length, u64 seq, checkpoint); in out/wire,
 * the framed stream FUZZ_WIRE reads.
 */
void fuzz_corpus(const char *out)
{
	struct ck_buf b = { 0 }, rec = { 0 }, wire = { 0 };
	char sub[PATH_MAX], name[32];
	unsigned int s, n;

	for (s = 0; s < 8; s++) {
		rec.len = wire.len = 0;
		for (n = 0; n < 1 + s % 3; n++) {
			uint64_t seq = n + 1;
			uint32_t len;
			struct msg_hdr h;

			fz__build(&b, seq, !n, n ? 1 + s % 3 : 4, s % 3, s % 2);
			len = b.len;
			rec.p = realloc(rec.p, rec.len + 12 + len);
			wire.p = realloc(wire.p, wire.len + sizeof(h) + len + sizeof(h));
			if (!rec.p || !wire.p)
				die("corpus: out of memory");
			memcpy(rec.p + rec.len, &len, 4);
			memcpy(rec.p + rec.len + 4, &seq, 8);
			memcpy(rec.p + rec.len + 12, b.p, len);
			rec.len += 12 + len;
			wire__header(&h, MSG_CKPT, seq, b.p, len);
			memcpy(wire.p + wire.len, &h, sizeof(h));
			memcpy(wire.p + wire.len + sizeof(h), b.p, len);
			wire.len += sizeof(h) + len;
			wire__header(&h, MSG_HEARTBEAT, now_ns(), NULL, 0);
			memcpy(wire.p + wire.len, &h, sizeof(h));
			wire.len += sizeof(h);
		}
		snprintf(name, sizeof(name), "seed-%u", s);
		snprintf(sub, sizeof(sub), "%s/ckpt", out);
		mkdir(sub, 0755);
		corpus__write(sub, name, rec.p, rec.len);
		snprintf(sub, sizeof(sub), "%s/wire", out);
		mkdir(sub, 0755);
		corpus__write(sub, name, wire.p, wire.len);
	}
	free(b.p);
	free(rec.p);
	free(wire.p);
}
