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

void test_fuzz(unsigned int cases)
{
	struct ck_buf good = { 0 }, bad = { 0 };
	unsigned int i, wrong = 0, refused_wire = 0, refused_apply = 0;
	struct replica r;
	char path[PATH_MAX];
	uint8_t *buf = NULL;
	size_t cap = 0;
	uint32_t before;
	const char *why, *what;
	struct msg_hdr h;
	int fd, ret;

	snprintf(path, sizeof(path), "%s/fuzz.img", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, FZ_SECTORS * ABI_SECTOR_SIZE) ||
	    replica__init(&r, FZ_MEM, FZ_VCPUS, fd, FZ_SECTORS))
		die("fuzz set-up: %m");

	fz__build(&good, 1, true, 20, 2, 1);
	if (replica__apply(&r, good.p, good.len, r.seq + 1, &why))
		die("a good full checkpoint was refused: %s", why);

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

/*
 * Each case: what it damages, and the reason replica__apply() must give.
 * ck__damage() does the damage of case k.
 */
static const struct {
	const char *name, *why;
} ck_cases[] = {
	{ "no end section",
	  "truncated: no end section" },
	{ "section past the end",
	  "section longer than the checkpoint" },
	{ "section header padding",
	  "section longer than the checkpoint" },
	{ "sections out of order",
	  "section missing or out of order" },
	{ "unknown section type",
	  "section missing or out of order" },
	{ "VM section size",
	  "VM section has the wrong size" },
	{ "VM vCPU count",
	  "VM shape differs from the replica's" },
	{ "VM memory size",
	  "VM shape differs from the replica's" },
	{ "VM padding",
	  "VM section has reserved bits set" },
	{ "VM full flag",
	  "VM section has reserved bits set" },
	{ "header seq not the body's",
	  "the message's sequence number is not the checkpoint's" },
	{ "incremental first",
	  "first checkpoint is not a full one" },
	{ "sequence repeated",
	  "checkpoint sequence went back" },
	{ "sequence gap",
	  "sequence gap: an incremental checkpoint must follow the replica's" },
	{ "TSC frequency",
	  "the guest's TSC frequency changed" },
	{ "page section size",
	  "page section too short" },
	{ "page count",
	  "page count does not match the section" },
	{ "page count above memory",
	  "page count does not match the section" },
	{ "page beyond memory",
	  "page beyond guest memory" },
	{ "vCPU section size",
	  "vCPU section has the wrong size" },
	{ "vCPU id",
	  "vCPU sections out of order" },
	{ "vCPU padding",
	  "vCPU sections out of order" },
	{ "MSR count",
	  "vCPU MSR count is wrong" },
	{ "MSR list",
	  "vCPU MSR list is wrong" },
	{ "pending write flags",
	  "pending write has reserved flags set" },
	{ "pending write with no count",
	  "pending write has no count but names a device" },
	{ "pending PIO size 3",
	  "pending PIO write has a bad size" },
	{ "pending PIO port 0xfffe, 4 bytes",
	  "pending PIO write runs past port 0xffff" },
	{ "pending PIO port 0x10000",
	  "pending PIO write runs past port 0xffff" },
	{ "pending PIO 1025 dwords",
	  "pending PIO write is longer than KVM holds" },
	{ "pending MMIO count 2",
	  "pending MMIO write is not one access" },
	{ "pending MMIO wrap",
	  "pending MMIO write wraps around" },
	{ "pending MMIO 4097 bytes",
	  "pending MMIO write is longer than KVM holds" },
	{ "pending write bus",
	  "pending write is on an unknown bus" },
	{ "irqchip section size",
	  "irqchip section has the wrong size" },
	{ "irqchip ids",
	  "irqchip section is malformed" },
	{ "device section size",
	  "device section too short" },
	{ "device flags",
	  "device section has reserved bits set" },
	{ "device padding",
	  "device section has reserved bits set" },
	{ "device record count",
	  "device log counts do not match" },
	{ "device block count above the limit",
	  "device log counts do not match" },
	{ "sector beyond the device",
	  "block write beyond the device" },
	{ "output record magic",
	  "output record is malformed" },
	{ "output record vCPU",
	  "output record is malformed" },
	{ "bytes after the end",
	  "bytes after the end section" },
	{ "end section with a body",
	  "bytes after the end section" },
	{ "disk fails at the second write",
	  "cannot write the replica's block device" },
};

/*
 * The damage of case k, to the good checkpoint b and to what comes with
 * it: the length, the message's seq, the replica.
 */
static void ck__damage(unsigned int k, struct ck_buf *b, size_t *len,
		       uint64_t *seq, struct replica *r)
{
	struct rlimit rl = { .rlim_cur = 8 * ABI_SECTOR_SIZE,
			     .rlim_max = RLIM_INFINITY };

	switch (k) {
	case 0:	/* no end section */
		*len = ck_off[S_END];
		break;
	case 1:	/* section past the end */
		sec(b, S_PAGES)->len += 1 << 20;
		break;
	case 2:	/* section header padding */
		sec(b, S_IRQ)->pad = 1;
		break;
	case 3:	/* sections out of order */
		sec(b, S_PAGES)->type = CK_VCPU;
		break;
	case 4:	/* unknown section type */
		sec(b, S_DEV)->type = CK_END + 1;
		break;
	case 5:	/* VM section size */
		sec(b, S_VM)->len -= 8;
		break;
	case 6:	/* VM vCPU count */
		vm_of(b)->nr_vcpus = FZ_VCPUS + 1;
		break;
	case 7:	/* VM memory size */
		vm_of(b)->mem_size += PAGE_SIZE;
		break;
	case 8:	/* VM padding */
		vm_of(b)->pad = 1;
		break;
	case 9:	/* VM full flag */
		vm_of(b)->full = 2;
		break;
	case 10:	/* header seq not the body's */
		*seq += 1;
		break;
	case 11:	/* incremental first */
		r->valid = false;
		break;
	case 12:	/* sequence repeated */
		*seq = vm_of(b)->seq = r->seq;
		break;
	case 13:	/* sequence gap */
		*seq = vm_of(b)->seq = r->seq + 999;
		break;
	case 14:	/* TSC frequency */
		vm_of(b)->tsc_khz += 1;
		break;
	case 15:	/* page section size */
		sec(b, S_PAGES)->len = 4;
		break;
	case 16:	/* page count */
		*(uint64_t *)body(b, S_PAGES) += 1;
		break;
	case 17:	/* page count above memory */
		*(uint64_t *)body(b, S_PAGES) = FZ_MEM / PAGE_SIZE + 1;
		break;
	case 18:	/* page beyond memory */
		((uint64_t *)body(b, S_PAGES))[1] = FZ_MEM / PAGE_SIZE;
		break;
	case 19:	/* vCPU section size */
		sec(b, S_VCPU0)->len -= 8;
		break;
	case 20:	/* vCPU id */
		((struct ck_vcpu *)body(b, S_VCPU0))->id = 1;
		break;
	case 21:	/* vCPU padding */
		((struct ck_vcpu *)body(b, S_VCPU1))->pad = 1;
		break;
	case 22:	/* MSR count */
		((struct ck_vcpu *)body(b, S_VCPU0))->state.msrs.hdr.nmsrs--;
		break;
	case 23:	/* MSR list */
		((struct ck_vcpu *)body(b, S_VCPU1))->state.msrs.entries[3].index ^= 1;
		break;
	case 24:	/* pending write flags */
		write_of(b)->flags = 1;
		break;
	case 25:	/* pending write with no count */
		write_of(b)->count = 0;
		break;
	case 26:	/* pending PIO size 3 */
		write_of(b)->len = 3;
		break;
	case 27:	/* pending PIO port 0xfffe, 4 bytes */
		write_of(b)->addr = 0xfffe;
		break;
	case 28:	/* pending PIO port 0x10000 */
		write_of(b)->addr = 0x10000;
		write_of(b)->len = 1;
		break;
	case 29:	/* pending PIO 1025 dwords */
		write_of(b)->count = KVM_KEMARI_MAX_DATA / 4 + 1;
		break;
	case 30:	/* pending MMIO count 2 */
		write_of(b)->bus = KVM_KEMARI_BUS_MMIO;
		write_of(b)->count = 2;
		break;
	case 31:	/* pending MMIO wrap */
		write_of(b)->bus = KVM_KEMARI_BUS_MMIO;
		write_of(b)->addr = ~0ULL - 1;
		break;
	case 32:	/* pending MMIO 4097 bytes */
		write_of(b)->bus = KVM_KEMARI_BUS_MMIO;
		write_of(b)->len = KVM_KEMARI_MAX_DATA + 1;
		break;
	case 33:	/* pending write bus */
		write_of(b)->bus = KVM_KEMARI_BUS_PIO + 1;
		break;
	case 34:	/* irqchip section size */
		sec(b, S_IRQ)->len -= 8;
		break;
	case 35:	/* irqchip ids */
		((struct irq_state *)body(b, S_IRQ))->chip[1].chip_id = 0;
		break;
	case 36:	/* device section size */
		sec(b, S_DEV)->len = 8;
		break;
	case 37:	/* device flags */
		dev_of(b)->flags |= 2;
		break;
	case 38:	/* device padding */
		dev_of(b)->pad = 1;
		break;
	case 39:	/* device record count */
		dev_of(b)->nr_out++;
		break;
	case 40:	/* device block count above the limit */
		dev_of(b)->nr_blk = CK_MAX_BLK + 1;
		break;
	case 41:	/* sector beyond the device */
		blk_of(b)[1].sector = FZ_SECTORS;
		break;
	case 42:	/* output record magic */
		out_of(b)->magic ^= 1;
		break;
	case 43:	/* output record vCPU */
		out_of(b)->vcpu = FZ_VCPUS;
		break;
	case 44:	/* bytes after the end */
		*len += 8;
		break;
	case 45:	/* end section with a body */
		sec(b, S_END)->len = 8;
		*len += 8;
		break;
	case 46:	/* disk fails at the second write */
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
	}
}

void test_checks(void)
{
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
	struct ck_buf b = { 0 };
	char path[PATH_MAX];
	struct replica r;
	const char *why;
	unsigned int i;
	uint32_t before;
	bool valid, ok;
	uint64_t seq;
	size_t len;
	int fd, ret;

	snprintf(path, sizeof(path), "%s/checks.img", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, FZ_SECTORS * ABI_SECTOR_SIZE) ||
	    replica__init(&r, FZ_MEM, FZ_VCPUS, fd, FZ_SECTORS))
		die("checks set-up: %m");
	fz__build(&b, 1, true, 20, 2, 1);
	if (replica__apply(&r, b.p, b.len, 1, &why))
		die("a good full checkpoint was refused: %s", why);

	for (i = 0; i < ARRAY_SIZE(ck_cases); i++) {
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
		ok = ret && !strcmp(why, ck_cases[i].why) &&
		     fz__digest(&r) == before;
		tap(ok, "checks: %s is refused, \"%s\", and the replica kept%s%s",
		    ck_cases[i].name, ck_cases[i].why, ok ? "" : "; got: ",
		    ok ? "" : ret ? why : "accepted");
		if (!ret || fz__digest(&r) != before) {
			/* Start again from a good full checkpoint. */
			fz__build(&b, r.seq + 1000, true, 20, 2, 1);
			replica__apply(&r, b.p, b.len, r.seq + 1000, &why);
		}
	}
	fz__build(&b, r.seq + 1, false, 3, 2, 1);
	ret = replica__apply(&r, b.p, b.len, r.seq + 1, &why);
	tap(!ret, "checks: the next good checkpoint still applies%s%s",
	    ret ? ": " : "", ret ? why : "");
	close(fd);
	free(b.p);
}
