// SPDX-License-Identifier: GPL-2.0-only
/*
 * Building and applying checkpoints.  replica__apply() parses everything
 * first and applies only a checkpoint that is whole and consistent, so a
 * truncated, corrupt or hostile one leaves the replica as it was.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ckpt.h"
#include "util.h"

#define ALIGN8(x)	(((x) + 7) & ~(size_t)7)

static void *ck__grow(struct ck_buf *b, size_t len)
{
	size_t need = b->len + ALIGN8(len);
	void *p;

	if (need > b->cap) {
		size_t cap = b->cap ? b->cap : 1 << 20;

		while (cap < need)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p)
			die("out of memory for a checkpoint of %zu bytes", need);
		b->cap = cap;
	}
	p = b->p + b->len;
	memset(p, 0, ALIGN8(len));
	b->len = need;
	return p;
}

static void *ck__section(struct ck_buf *b, enum ck_sec_type type, size_t len)
{
	struct ck_sec *s = ck__grow(b, sizeof(*s));

	s->type = type;
	s->len = len;
	return len ? ck__grow(b, len) : NULL;
}

void ck__reset(struct ck_buf *b)
{
	b->len = 0;
}

void ck__add_vm(struct ck_buf *b, const struct ck_vm *vm)
{
	memcpy(ck__section(b, CK_VM, sizeof(*vm)), vm, sizeof(*vm));
}

void ck__add_pages(struct ck_buf *b, const uint8_t *mem,
		   const uint64_t *gfns, size_t n)
{
	uint8_t *p = ck__section(b, CK_PAGES, 8 + n * (8 + PAGE_SIZE));
	size_t i;

	memcpy(p, &(uint64_t){ n }, 8);
	p += 8;
	for (i = 0; i < n; i++) {
		memcpy(p, &gfns[i], 8);
		memcpy(p + 8, mem + gfns[i] * PAGE_SIZE, PAGE_SIZE);
		p += 8 + PAGE_SIZE;
	}
}

void ck__add_vcpu(struct ck_buf *b, unsigned int id,
		  const struct vcpu_state *s)
{
	struct ck_vcpu *v = ck__section(b, CK_VCPU, sizeof(*v));

	v->id = id;
	v->state = *s;
}

void ck__add_irq(struct ck_buf *b, const struct irq_state *irq)
{
	memcpy(ck__section(b, CK_IRQ, sizeof(*irq)), irq, sizeof(*irq));
}

void ck__add_dev(struct ck_buf *b, const struct ck_blk *blk, uint32_t nr_blk,
		 const struct out_record *out, uint32_t nr_out, uint32_t flags)
{
	size_t blk_len = nr_blk * sizeof(*blk);
	uint8_t *p = ck__section(b, CK_DEV, sizeof(struct ck_dev) + blk_len +
				 nr_out * sizeof(*out));
	struct ck_dev d = { .nr_blk = nr_blk, .nr_out = nr_out, .flags = flags };

	memcpy(p, &d, sizeof(d));
	memcpy(p + sizeof(d), blk, blk_len);
	memcpy(p + sizeof(d) + blk_len, out, nr_out * sizeof(*out));
}

void ck__add_end(struct ck_buf *b)
{
	ck__section(b, CK_END, 0);
}

int replica__init(struct replica *r, uint64_t mem_size, uint32_t nr_vcpus,
		  int blk_fd, uint64_t blk_sectors)
{
	memset(r, 0, sizeof(*r));
	r->mem_size = mem_size;
	r->nr_vcpus = nr_vcpus;
	r->blk_fd = blk_fd;
	r->blk_sectors = blk_sectors;
	r->mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return r->mem == MAP_FAILED ? -ENOMEM : 0;
}

/* The sections of one checkpoint, found and checked by ck__parse(). */
struct ck_parsed {
	const struct ck_vm *vm;
	const uint8_t *pages;
	uint64_t nr_pages;
	const struct ck_vcpu *vcpu[MAX_VCPUS];
	const struct irq_state *irq;
	const struct ck_dev *dev;
	const struct ck_blk *blk;
	const struct out_record *out;
};

static int refuse(const char **why, const char *msg)
{
	*why = msg;
	return -EBADMSG;
}

/*
 * KVM_KEMARI_SET_PENDING's rules (kemari.rst, and kemari_check_write() in
 * virt/kvm/kemari.c), each with its reason: a write that KVM refuses
 * cannot be resumed, so the checkpoint that carries it is refused here.
 */
static const char *ck__check_write(const struct kvm_kemari_write *w)
{
	if (w->flags)
		return "pending write has reserved flags set";
	if (!w->count && (w->bus || w->len || w->addr))
		return "pending write has no count but names a device";
	if (!w->count)
		return NULL;
	switch (w->bus) {
	case KVM_KEMARI_BUS_PIO:
		if (w->len != 1 && w->len != 2 && w->len != 4)
			return "pending PIO write has a bad size";
		if (w->addr > 0xffff || w->addr + w->len > 0x10000)
			return "pending PIO write runs past port 0xffff";
		if (w->count > KVM_KEMARI_MAX_DATA / w->len)
			return "pending PIO write is longer than KVM holds";
		break;
	case KVM_KEMARI_BUS_MMIO:
		if (w->count != 1 || !w->len)
			return "pending MMIO write is not one access";
		if (w->addr + w->len < w->addr)
			return "pending MMIO write wraps around";
		if (w->len > KVM_KEMARI_MAX_DATA)
			return "pending MMIO write is longer than KVM holds";
		break;
	default:
		return "pending write is on an unknown bus";
	}
	return NULL;
}

static int ck__check_vcpu(const struct ck_vcpu *v, unsigned int expect,
			  const char **why)
{
	const char *bad = ck__check_write(&v->state.pending.write);
	unsigned int i;

	if (v->id != expect || v->pad)
		return refuse(why, "vCPU sections out of order");
	if (v->state.msrs.hdr.nmsrs != NR_SAVED_MSRS)
		return refuse(why, "vCPU MSR count is wrong");
	for (i = 0; i < NR_SAVED_MSRS; i++)
		if (v->state.msrs.entries[i].index != vcpu__saved_msr(i))
			return refuse(why, "vCPU MSR list is wrong");
	if (bad)
		return refuse(why, bad);
	return 0;
}

static int ck__check_pages(const struct replica *r, const uint8_t *p,
			   uint64_t n, const char **why)
{
	uint64_t i, gfn;

	for (i = 0; i < n; i++, p += 8 + PAGE_SIZE) {
		memcpy(&gfn, p, 8);
		if (gfn >= r->mem_size / PAGE_SIZE)
			return refuse(why, "page beyond guest memory");
	}
	return 0;
}

static int ck__parse(const struct replica *r, const uint8_t *buf,
		     size_t len, uint64_t seq, struct ck_parsed *ck,
		     const char **why)
{
	unsigned int next = CK_VM, vcpus = 0;
	size_t off = 0;

	memset(ck, 0, sizeof(*ck));
	for (;;) {
		struct ck_sec s;
		const uint8_t *body;

		if (len - off < sizeof(s))
			return refuse(why, "truncated: no end section");
		memcpy(&s, buf + off, sizeof(s));
		off += sizeof(s);
		if (s.pad || s.len > len - off || ALIGN8(s.len) > len - off)
			return refuse(why, "section longer than the checkpoint");
		body = buf + off;
		off += ALIGN8(s.len);

		if (s.type != next)
			return refuse(why, "section missing or out of order");

		switch (s.type) {
		case CK_VM:
			if (s.len != sizeof(*ck->vm))
				return refuse(why, "VM section has the wrong size");
			ck->vm = (const void *)body;
			if (ck->vm->mem_size != r->mem_size ||
			    ck->vm->nr_vcpus != r->nr_vcpus)
				return refuse(why, "VM shape differs from the replica's");
			if (ck->vm->pad || ck->vm->full > 1)
				return refuse(why, "VM section has reserved bits set");
			if (ck->vm->seq != seq)
				return refuse(why, "the message's sequence number is not the checkpoint's");
			if (r->lost)
				return refuse(why, "the replica's disk is lost: this secondary must be replaced");
			if (!r->valid && !ck->vm->full)
				return refuse(why, "first checkpoint is not a full one");
			if (r->valid && ck->vm->seq <= r->seq)
				return refuse(why, "checkpoint sequence went back");
			/*
			 * No gap, full checkpoints included: a full one carries
			 * the memory, but only its own epoch's block writes.
			 */
			if (r->valid && ck->vm->seq != r->seq + 1)
				return refuse(why, "sequence gap: a checkpoint must follow the replica's");
			/* The handshake, or the first checkpoint, set it. */
			if ((r->valid || r->tsc_khz) &&
			    ck->vm->tsc_khz != r->tsc_khz)
				return refuse(why, "the guest's TSC frequency changed");
			next = CK_PAGES;
			break;
		case CK_PAGES:
			if (s.len < 8)
				return refuse(why, "page section too short");
			memcpy(&ck->nr_pages, body, 8);
			if (ck->nr_pages > r->mem_size / PAGE_SIZE ||
			    s.len != 8 + ck->nr_pages * (8 + PAGE_SIZE))
				return refuse(why, "page count does not match the section");
			ck->pages = body + 8;
			if (ck__check_pages(r, ck->pages, ck->nr_pages, why))
				return -EBADMSG;
			next = CK_VCPU;
			break;
		case CK_VCPU:
			if (s.len != sizeof(struct ck_vcpu))
				return refuse(why, "vCPU section has the wrong size");
			ck->vcpu[vcpus] = (const void *)body;
			if (ck__check_vcpu(ck->vcpu[vcpus], vcpus, why))
				return -EBADMSG;
			vcpus++;
			next = vcpus == r->nr_vcpus ? CK_IRQ : CK_VCPU;
			break;
		case CK_IRQ:
			if (s.len != sizeof(*ck->irq))
				return refuse(why, "irqchip section has the wrong size");
			ck->irq = (const void *)body;
			if (ck->irq->chip[0].chip_id != 0 ||
			    ck->irq->chip[1].chip_id != 1 ||
			    ck->irq->chip[2].chip_id != 2)
				return refuse(why, "irqchip section is malformed");
			next = CK_DEV;
			break;
		case CK_DEV: {
			uint32_t i;

			if (s.len < sizeof(*ck->dev))
				return refuse(why, "device section too short");
			ck->dev = (const void *)body;
			if (ck->dev->pad || ck->dev->flags & ~CK_DEV_OUTPUT_HELD)
				return refuse(why, "device section has reserved bits set");
			if (ck->dev->nr_blk > CK_MAX_BLK ||
			    ck->dev->nr_out > CK_MAX_OUT ||
			    s.len != sizeof(*ck->dev) +
				     ck->dev->nr_blk * sizeof(struct ck_blk) +
				     ck->dev->nr_out * sizeof(struct out_record))
				return refuse(why, "device log counts do not match");
			ck->blk = (const void *)(body + sizeof(*ck->dev));
			ck->out = (const void *)(ck->blk + ck->dev->nr_blk);
			for (i = 0; i < ck->dev->nr_blk; i++)
				if (ck->blk[i].sector >= r->blk_sectors)
					return refuse(why, "block write beyond the device");
			for (i = 0; i < ck->dev->nr_out; i++)
				if (ck->out[i].magic != ABI_RECORD_MAGIC ||
				    ck->out[i].vcpu >= r->nr_vcpus)
					return refuse(why, "output record is malformed");
			next = CK_END;
			break;
		}
		case CK_END:
			if (s.len || off != len)
				return refuse(why, "bytes after the end section");
			return 0;
		}
	}
}

/*
 * The block writes, first and undoably: the sectors they overwrite are
 * read before any is written, and written back if one write fails, so
 * that a failing disk leaves the replica at its last checkpoint.
 */
static int replica__write_blocks(struct replica *r, const struct ck_blk *blk,
				 uint32_t n, const char **why)
{
	struct ck_blk *old;
	uint32_t i, j;
	ssize_t w = 0;
	int ret = 0;

	if (!n)
		return 0;
	old = malloc(n * sizeof(*old));
	if (!old) {
		*why = "no memory to apply the block writes";
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		old[i].sector = blk[i].sector;
		if (pread(r->blk_fd, old[i].data, ABI_SECTOR_SIZE,
			  blk[i].sector * ABI_SECTOR_SIZE) != ABI_SECTOR_SIZE) {
			*why = "cannot read the replica's block device";
			free(old);
			return -EIO;
		}
	}
	for (i = 0; i < n; i++) {
		w = pwrite(r->blk_fd, blk[i].data, ABI_SECTOR_SIZE,
			   blk[i].sector * ABI_SECTOR_SIZE);
		if (w != ABI_SECTOR_SIZE)
			break;
	}
	if (i < n) {
		*why = "cannot write the replica's block device";
		ret = -EIO;
		/* A short write changed sector i; a failed one did not. */
		if (w >= 0)
			i++;
		for (j = i; j-- > 0; )
			if (pwrite(r->blk_fd, old[j].data, ABI_SECTOR_SIZE,
				   old[j].sector * ABI_SECTOR_SIZE) !=
			    ABI_SECTOR_SIZE) {
				*why = "cannot write the replica's block device, nor undo the writes: the replica is lost";
				r->valid = false;
				r->lost = true;
			}
	}
	free(old);
	return ret;
}

/* Give the shadow VM the replica's state again, after a refusal. */
static void replica__reload_shadow(struct replica *r)
{
	unsigned int i;

	if (!r->valid)
		return;
	/*
	 * KVM took this state before, so it takes it again; were it not to,
	 * takeover, which loads it once more, would say so.
	 */
	vm__restore_irq(r->shadow, &r->irq);
	for (i = 0; i < r->nr_vcpus; i++)
		vcpu__restore(&r->shadow->vcpu[i], &r->vcpu[i]);
}

/*
 * Let KVM check the checkpoint's vCPU and irqchip state: load it into the
 * shadow VM.  A refusal names what KVM refused; the ioctl and its error
 * are logged by kvm.c.
 */
static int replica__load_shadow(struct replica *r, const struct ck_parsed *ck,
				const char **why)
{
	static char msg[96];
	unsigned int i;
	int ret = 0;

	/* In the order of secondary__takeover(): the irqchip, then the vCPUs. */
	ret = vm__restore_irq(r->shadow, ck->irq);
	if (ret)
		snprintf(msg, sizeof(msg), "KVM refused the irqchip or PIT state (%s)",
			 strerror(-ret));
	for (i = 0; !ret && i < r->nr_vcpus; i++) {
		ret = vcpu__restore(&r->shadow->vcpu[i], &ck->vcpu[i]->state);
		if (ret)
			snprintf(msg, sizeof(msg), "KVM refused vCPU %u's state (%s)",
				 i, strerror(-ret));
	}
	if (!ret)
		return 0;
	*why = msg;
	replica__reload_shadow(r);
	return -EBADMSG;
}

int replica__apply(struct replica *r, const uint8_t *buf, size_t len,
		   uint64_t seq, const char **why)
{
	struct ck_parsed ck;
	const uint8_t *p;
	uint64_t i, gfn;
	int ret;

	ret = ck__parse(r, buf, len, seq, &ck, why);
	if (!ret && r->shadow)
		ret = replica__load_shadow(r, &ck, why);
	if (ret)
		return ret;
	ret = replica__write_blocks(r, ck.blk, ck.dev->nr_blk, why);
	if (ret) {
		if (r->shadow)
			replica__reload_shadow(r);
		return ret;
	}

	/* A full checkpoint replaces everything; what it omits is zero. */
	if (ck.vm->full && madvise(r->mem, r->mem_size, MADV_DONTNEED))
		memset(r->mem, 0, r->mem_size);
	for (i = 0, p = ck.pages; i < ck.nr_pages; i++, p += 8 + PAGE_SIZE) {
		memcpy(&gfn, p, 8);
		memcpy(r->mem + gfn * PAGE_SIZE, p + 8, PAGE_SIZE);
	}
	for (i = 0; i < r->nr_vcpus; i++)
		r->vcpu[i] = ck.vcpu[i]->state;
	r->irq = *ck.irq;
	r->nr_out = ck.dev->flags & CK_DEV_OUTPUT_HELD ? ck.dev->nr_out : 0;
	memcpy(r->out, ck.out, r->nr_out * sizeof(*r->out));
	r->seq = ck.vm->seq;
	r->tsc_khz = ck.vm->tsc_khz;
	r->valid = true;
	return 0;
}
