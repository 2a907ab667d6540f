// SPDX-License-Identifier: GPL-2.0-only
/*
 * VM and vCPU set-up, state save and restore, dirty ring harvest.
 * Every function returns 0 or a negative errno and prints what failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kvm.h"
#include "tls.h"
#include "util.h"

static const uint32_t saved_msrs[NR_SAVED_MSRS] = {
	0x174, 0x175, 0x176,		/* SYSENTER_CS, _ESP, _EIP */
	0xc0000081, 0xc0000082,		/* STAR, LSTAR */
	0xc0000083, 0xc0000084,		/* CSTAR, SYSCALL_MASK */
	0xc0000102, 0xc0000103,		/* KERNEL_GS_BASE, TSC_AUX */
	0x277,				/* PAT */
	0x3b,				/* TSC_ADJUST, kemari.rst 7 */
};

#define MSR_IA32_TSC	0x10

uint32_t vcpu__saved_msr(unsigned int i)
{
	return saved_msrs[i];
}

/* An ioctl that must succeed: on failure say which and return -errno. */
#define IOCTL(fd, req, arg)						\
	({								\
		int __r = ioctl(fd, req, arg);				\
		if (__r < 0) {						\
			__r = -errno;					\
			warn_msg("%s: %s", #req, strerror(errno));	\
		}							\
		__r;							\
	})

int kvm__open(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		warn_msg("open /dev/kvm: %s", strerror(errno));
	return fd < 0 ? -errno : fd;
}

static int vm__enable_cap(struct vm *vm, uint32_t cap, uint64_t a0,
			  uint64_t a1)
{
	struct kvm_enable_cap ec = { .cap = cap, .args = { a0, a1 } };

	return IOCTL(vm->fd, KVM_ENABLE_CAP, &ec);
}

static int vm__enable_kemari(struct vm *vm)
{
	int mask = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_KEMARI);
	uint64_t flags = KVM_KEMARI_ENABLE;
	int r, ring_cap;

	if (mask <= 0 && !vm->cfg.no_kemari) {
		warn_msg("this kernel has no Kemari (KVM_CAP_KEMARI)");
		return -EOPNOTSUPP;
	}
	if (vm->cfg.harvest_bitmap) {
		/* The comparison variant: a bitmap the VMM clears itself. */
		r = vm__enable_cap(vm, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
				   KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, 0);
		vm->bitmap = calloc(vm->cfg.mem_size / PAGE_SIZE / 64 + 1, 8);
		if (!vm->bitmap)
			r = -ENOMEM;
	} else {
		ring_cap = KVM_CAP_DIRTY_LOG_RING_ACQ_REL;
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, ring_cap) <= 0)
			ring_cap = KVM_CAP_DIRTY_LOG_RING;
		r = vm__enable_cap(vm, ring_cap, vm->cfg.ring_entries *
				   sizeof(struct kvm_dirty_gfn), 0);
	}
	if (r || vm->cfg.no_kemari)
		return r;
	if (vm->cfg.no_tsc_log)
		;
	else if (mask & KVM_KEMARI_TSC_LOG)
		flags |= KVM_KEMARI_TSC_LOG;
	else
		warn_msg("this kernel has no KVM_KEMARI_TSC_LOG: the TSC is restored from IA32_TSC alone");
	r = vm__enable_cap(vm, KVM_CAP_KEMARI, flags, vm->cfg.dirty_quota);
	if (!r)
		vm->kemari = true;
	return r;
}

/*
 * Where CPUID names the CPU it runs on: the initial APIC ID (leaf 1, EBX
 * bits 31:24) and the x2APIC ID (leaves 0xb and 0x1f, EDX).  KVM reports
 * the host CPU's that the ioctl ran on; each vCPU gets its own id.
 */
static void cpuid__set_apic_id(struct kvm_cpuid2 *cpuid, unsigned int id)
{
	struct kvm_cpuid_entry2 *e;
	unsigned int i;

	for (i = 0; i < cpuid->nent; i++) {
		e = &cpuid->entries[i];
		if (e->function == 1)
			e->ebx = (e->ebx & 0x00ffffff) | id << 24;
		if (e->function == 0xb || e->function == 0x1f)
			e->edx = id;
	}
}

static int vcpu__create(struct vm *vm, unsigned int id,
			struct kvm_cpuid2 *cpuid)
{
	struct vcpu *vcpu = &vm->vcpu[id];
	size_t ring_size = vm->cfg.ring_entries * sizeof(struct kvm_dirty_gfn);

	vcpu->vm = vm;
	vcpu->id = id;
	vcpu->fd = IOCTL(vm->fd, KVM_CREATE_VCPU, id);
	if (vcpu->fd < 0)
		return vcpu->fd;
	vcpu->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE,
			 MAP_SHARED, vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED)
		return -errno;
	if (vm->cfg.harvest_bitmap)
		ring_size = 0;
	else
		vcpu->ring = mmap(NULL, ring_size, PROT_READ | PROT_WRITE,
				  MAP_SHARED, vcpu->fd,
				  KVM_DIRTY_LOG_PAGE_OFFSET * PAGE_SIZE);
	if (ring_size && vcpu->ring == MAP_FAILED) {
		warn_msg("mmap dirty ring: %s", strerror(errno));
		return -errno;
	}
	if (vm->cfg.tsc_khz) {
		int r = IOCTL(vcpu->fd, KVM_SET_TSC_KHZ, vm->cfg.tsc_khz);

		if (r)
			return r;
	}
	cpuid__set_apic_id(cpuid, id);
	return IOCTL(vcpu->fd, KVM_SET_CPUID2, cpuid);
}

/*
 * What KVM_GET_SUPPORTED_CPUID says, which every vCPU is given, with the
 * APIC ids 0: the same on every CPU of the host.
 */
static struct kvm_cpuid2 *kvm__supported_cpuid(int kvm_fd)
{
	struct kvm_cpuid2 *cpuid;

	cpuid = calloc(1, sizeof(*cpuid) + 256 * sizeof(cpuid->entries[0]));
	if (!cpuid)
		return NULL;
	cpuid->nent = 256;
	if (IOCTL(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid)) {
		free(cpuid);
		return NULL;
	}
	cpuid__set_apic_id(cpuid, 0);
	return cpuid;
}

int kvm__cpuid_digest(uint8_t out[TLS_DIGEST_LEN])
{
	struct kvm_cpuid2 *cpuid;
	int fd = kvm__open();

	if (fd < 0)
		return fd;
	cpuid = kvm__supported_cpuid(fd);
	close(fd);
	if (!cpuid)
		return -EIO;
	tls__digest(cpuid->entries, cpuid->nent * sizeof(cpuid->entries[0]),
		    out);
	free(cpuid);
	return 0;
}

int kvm__scratch_open(struct kvm_scratch *k)
{
	k->kvm = kvm__open();
	k->vm = k->kvm < 0 ? -1 : ioctl(k->kvm, KVM_CREATE_VM, 0);
	k->vcpu = k->vm < 0 ? -1 : ioctl(k->vm, KVM_CREATE_VCPU, 0);
	return k->vcpu < 0 ? -errno : 0;
}

void kvm__scratch_close(struct kvm_scratch *k)
{
	if (k->vcpu >= 0)
		close(k->vcpu);
	if (k->vm >= 0)
		close(k->vm);
	if (k->kvm >= 0)
		close(k->kvm);
}

uint32_t kvm__host_tsc_khz(bool *scaling)
{
	struct kvm_scratch k;
	int khz = -1;

	if (!kvm__scratch_open(&k))
		khz = ioctl(k.vcpu, KVM_GET_TSC_KHZ, 0);
	*scaling = k.kvm >= 0 &&
		   ioctl(k.kvm, KVM_CHECK_EXTENSION, KVM_CAP_TSC_CONTROL) > 0;
	kvm__scratch_close(&k);
	return khz > 0 ? khz : 0;
}

int kvm__check_tsc_khz(uint32_t khz, char *why, size_t len)
{
	bool scaling;
	uint32_t host = kvm__host_tsc_khz(&scaling);

	if (scaling)
		return 0;
	if (!host) {
		snprintf(why, len, "cannot read this host's TSC rate (%s)",
			 strerror(errno));
		return -EIO;
	}
	if ((uint64_t)khz * 4000 < (uint64_t)host * 3999 ||
	    (uint64_t)khz * 4000 > (uint64_t)host * 4001) {
		snprintf(why, len, "this host cannot give the guest its TSC rate of %u kHz: it has no TSC scaling, and its own TSC runs at %u kHz",
			 khz, host);
		return -ERANGE;
	}
	return 0;
}

int vm__create(struct vm *vm, const struct vm_config *cfg, uint8_t *mem)
{
	struct kvm_userspace_memory_region region = {
		.slot = 0,
		.flags = KVM_MEM_LOG_DIRTY_PAGES,
		.memory_size = cfg->mem_size,
	};
	struct kvm_pit_config pit = { 0 };
	struct kvm_cpuid2 *cpuid;
	unsigned int i;
	int r;

	memset(vm, 0, sizeof(*vm));
	vm->cfg = *cfg;
	vm->fd = -1;
	vm->kvm_fd = kvm__open();
	if (vm->kvm_fd < 0)
		return vm->kvm_fd;
	vm->fd = IOCTL(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->fd < 0)
		return vm->fd;
	vm->run_size = IOCTL(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size < 0)
		return vm->run_size;
	r = vm__enable_kemari(vm);
	if (r)
		return r;
	r = IOCTL(vm->fd, KVM_SET_TSS_ADDR, 0xfffbd000UL);
	if (!r)
		r = IOCTL(vm->fd, KVM_CREATE_IRQCHIP, 0);
	if (!r)
		r = IOCTL(vm->fd, KVM_CREATE_PIT2, &pit);
	if (r)
		return r;

	vm->mem = mem ? mem : mmap(NULL, cfg->mem_size, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
				   -1, 0);
	if (vm->mem == MAP_FAILED)
		return -ENOMEM;
	region.userspace_addr = (uintptr_t)vm->mem;
	r = IOCTL(vm->fd, KVM_SET_USER_MEMORY_REGION, &region);
	if (r)
		return r;

	cpuid = kvm__supported_cpuid(vm->kvm_fd);
	if (!cpuid)
		return -EIO;
	tls__digest(cpuid->entries, cpuid->nent * sizeof(cpuid->entries[0]),
		    vm->cpuid_digest);
	for (i = 0; !r && i < cfg->nr_vcpus; i++)
		r = vcpu__create(vm, i, cpuid);
	free(cpuid);
	/* The secondary must run the guest's TSC at this frequency. */
	if (!r && !vm->cfg.tsc_khz) {
		r = IOCTL(vm->vcpu[0].fd, KVM_GET_TSC_KHZ, 0);
		if (r > 0)
			vm->cfg.tsc_khz = r;
		r = r > 0 ? 0 : r;
	}
	return r;
}

/* 64-bit mode from the first instruction: identity map, flat GDT. */
static void vm__setup_long_mode(struct vm *vm)
{
	uint64_t *pml4 = (void *)(vm->mem + ABI_PML4);
	uint64_t *pdpt = (void *)(vm->mem + ABI_PML4 + PAGE_SIZE);
	uint64_t *pd = (void *)(vm->mem + ABI_PML4 + 2 * PAGE_SIZE);
	uint64_t *gdt = (void *)(vm->mem + ABI_GDT);
	unsigned int i;

	pml4[0] = (ABI_PML4 + PAGE_SIZE) | 0x3;
	pdpt[0] = (ABI_PML4 + 2 * PAGE_SIZE) | 0x3;
	for (i = 0; i < 512; i++)
		pd[i] = ((uint64_t)i << 21) | 0x83;	/* P, RW, PS */
	gdt[1] = 0x00af9b000000ffffULL;		/* 0x08: code, L */
	gdt[2] = 0x00cf93000000ffffULL;		/* 0x10: data */
	gdt[3] = 0x00008b0000000067ULL;		/* 0x18: busy TSS */
}

static int vcpu__setup_long_mode(struct vcpu *vcpu)
{
	struct kvm_segment code = {
		.limit = 0xffffffff, .selector = 0x08, .type = 11,
		.present = 1, .s = 1, .l = 1, .g = 1,
	};
	struct kvm_segment data = {
		.limit = 0xffffffff, .selector = 0x10, .type = 3,
		.present = 1, .s = 1, .db = 1, .g = 1,
	};
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
	struct kvm_regs regs = {
		.rip = ABI_CODE,
		.rsp = ABI_STACK_TOP(vcpu->id),
		.rdi = vcpu->id,
		.rflags = 0x2,
	};
	struct kvm_sregs sregs;
	int r;

	r = IOCTL(vcpu->fd, KVM_GET_SREGS, &sregs);
	if (r)
		return r;
	sregs.cs = code;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.tr.selector = 0x18;
	sregs.tr.limit = 0x67;
	sregs.tr.type = 11;
	sregs.tr.present = 1;
	sregs.gdt.base = ABI_GDT;
	sregs.gdt.limit = 4 * 8 - 1;
	sregs.cr3 = ABI_PML4;
	sregs.cr4 = 0x20 | 0x600;		/* PAE, OSFXSR, OSXMMEXCPT */
	sregs.cr0 = 0x80050033;			/* PG, AM, WP, NE, ET, MP, PE */
	sregs.efer = 0x500;			/* LMA, LME */
	r = IOCTL(vcpu->fd, KVM_SET_SREGS, &sregs);
	if (!r)
		r = IOCTL(vcpu->fd, KVM_SET_REGS, &regs);
	if (!r)
		r = IOCTL(vcpu->fd, KVM_SET_MP_STATE, &mp);
	return r;
}

int vm__load_guest(struct vm *vm, const void *image, size_t size,
		   const struct guest_config *gc)
{
	uint64_t need = ABI_DATA + (uint64_t)gc->nr_vcpus * gc->data_pages *
			PAGE_SIZE;

	/* The guest maps its first GiB only. */
	if (size > ABI_DATA - ABI_CODE || need > vm->cfg.mem_size ||
	    need > (1ULL << 30)) {
		warn_msg("guest does not fit: %llu bytes of memory, %llu needed",
			 (unsigned long long)vm->cfg.mem_size,
			 (unsigned long long)need);
		return -E2BIG;
	}
	vm__setup_long_mode(vm);
	memcpy(vm->mem + ABI_CONFIG, gc, sizeof(*gc));
	memcpy(vm->mem + ABI_CODE, image, size);
	return 0;
}

int vm__start_vcpus(struct vm *vm)
{
	unsigned int i;
	int r = 0;

	for (i = 0; !r && i < vm->cfg.nr_vcpus; i++)
		r = vcpu__setup_long_mode(&vm->vcpu[i]);
	return r;
}

int vm__save_irq(struct vm *vm, struct irq_state *irq)
{
	unsigned int i;
	int r = 0;

	for (i = 0; !r && i < 3; i++) {
		irq->chip[i].chip_id = i;
		r = IOCTL(vm->fd, KVM_GET_IRQCHIP, &irq->chip[i]);
	}
	if (!r)
		r = IOCTL(vm->fd, KVM_GET_PIT2, &irq->pit);
	return r ? r : IOCTL(vm->fd, KVM_GET_CLOCK, &irq->clock);
}

int vm__restore_irq(struct vm *vm, const struct irq_state *irq)
{
	unsigned int i;
	int r = 0;

	struct kvm_clock_data clock = { .clock = irq->clock.clock };

	for (i = 0; !r && i < 3; i++)
		r = IOCTL(vm->fd, KVM_SET_IRQCHIP, &irq->chip[i]);
	if (!r)
		r = IOCTL(vm->fd, KVM_SET_PIT2, &irq->pit);
	/* kemari.rst 7: kvmclock goes on from the checkpoint's value. */
	return r ? r : IOCTL(vm->fd, KVM_SET_CLOCK, &clock);
}

static int vcpu__tsc_offset(struct vcpu *vcpu, unsigned long req,
			    uint64_t *ofs)
{
	struct kvm_device_attr a = {
		.group = KVM_VCPU_TSC_CTRL,
		.attr = KVM_VCPU_TSC_OFFSET,
		.addr = (uint64_t)(uintptr_t)ofs,
	};

	return IOCTL(vcpu->fd, req, &a);
}

static int vcpu__get_msrs(struct vcpu *vcpu, struct vcpu_state *s)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} tsc = { .hdr.nmsrs = 1, .e.index = MSR_IA32_TSC };
	unsigned int i;
	int r;

	s->msrs.hdr.nmsrs = NR_SAVED_MSRS;
	for (i = 0; i < NR_SAVED_MSRS; i++)
		s->msrs.entries[i].index = saved_msrs[i];
	r = IOCTL(vcpu->fd, KVM_GET_MSRS, &s->msrs);
	if (r >= 0 && r != NR_SAVED_MSRS) {
		warn_msg("KVM_GET_MSRS: only %d of %d MSRs", r, NR_SAVED_MSRS);
		return -EIO;
	}
	r = IOCTL(vcpu->fd, KVM_GET_MSRS, &tsc);
	if (r != 1)
		return r < 0 ? r : -EIO;
	s->tsc = tsc.e.data;
	return 0;
}

int vcpu__save(struct vcpu *vcpu, struct vcpu_state *s)
{
	int fd = vcpu->fd, r;

	memset(s, 0, sizeof(*s));
	r = IOCTL(fd, KVM_GET_REGS, &s->regs);
	if (!r)
		r = IOCTL(fd, KVM_GET_SREGS, &s->sregs);
	if (!r)
		r = IOCTL(fd, KVM_GET_XSAVE, &s->xsave);
	if (!r)
		r = IOCTL(fd, KVM_GET_XCRS, &s->xcrs);
	if (!r)
		r = IOCTL(fd, KVM_GET_LAPIC, &s->lapic);
	if (!r)
		r = IOCTL(fd, KVM_GET_VCPU_EVENTS, &s->events);
	if (!r)
		r = IOCTL(fd, KVM_GET_MP_STATE, &s->mp_state);
	if (!r)
		r = IOCTL(fd, KVM_GET_DEBUGREGS, &s->debugregs);
	if (!r)
		r = vcpu__get_msrs(vcpu, s);
	if (!r)
		r = vcpu__tsc_offset(vcpu, KVM_GET_DEVICE_ATTR, &s->tsc_offset);
	if (!r && vcpu->vm->kemari)
		r = IOCTL(fd, KVM_KEMARI_GET_PENDING, &s->pending);
	s->tsc_log = vcpu->tsc_log;
	return r;
}

/* Everything but IA32_TSC, which vm__restore_tsc() sets once. */
int vcpu__restore(struct vcpu *vcpu, const struct vcpu_state *s)
{
	static struct kvm_kemari_pending no_write;
	int fd = vcpu->fd, r;

	r = IOCTL(fd, KVM_SET_SREGS, &s->sregs);
	if (!r)
		r = IOCTL(fd, KVM_SET_REGS, &s->regs);
	if (!r)
		r = IOCTL(fd, KVM_SET_XSAVE, &s->xsave);
	if (!r)
		r = IOCTL(fd, KVM_SET_XCRS, &s->xcrs);
	if (!r) {
		r = IOCTL(fd, KVM_SET_MSRS, &s->msrs);
		if (r >= 0)
			r = r == NR_SAVED_MSRS ? 0 : -EIO;
	}
	if (!r)
		r = IOCTL(fd, KVM_SET_MP_STATE, &s->mp_state);
	if (!r)
		r = IOCTL(fd, KVM_SET_LAPIC, &s->lapic);
	if (!r)
		r = IOCTL(fd, KVM_SET_VCPU_EVENTS, &s->events);
	if (!r)
		r = IOCTL(fd, KVM_SET_DEBUGREGS, &s->debugregs);
	/* A write held from an earlier restore (a shadow VM) goes first. */
	if (!r && vcpu->vm->kemari)
		r = IOCTL(fd, KVM_KEMARI_SET_PENDING, &no_write);
	if (!r && s->pending.write.count)
		r = IOCTL(fd, KVM_KEMARI_SET_PENDING, &s->pending);
	return r;
}

int vcpu__set_tsc(struct vcpu *vcpu, uint64_t tsc)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e.index = MSR_IA32_TSC, .e.data = tsc };
	int r = IOCTL(vcpu->fd, KVM_SET_MSRS, &m);

	return r == 1 ? 0 : (r < 0 ? r : -EIO);
}

/*
 * kemari.rst 7: vCPU 0's TSC is written once, to base; every other vCPU
 * gets vCPU 0's new offset plus the difference it had on the primary, so
 * that the restore does not depend on KVM's one-second heuristic and keeps
 * the guest's own differences (IA32_TSC_ADJUST).  base is the least value
 * that puts every vCPU at or above its saved IA32_TSC and its log's max.
 */
int vm__restore_tsc(struct vm *vm, const struct vcpu_state *s)
{
	uint64_t base = 0, ofs0, ofs, t;
	unsigned int i;
	int r;

	/* TSCs and differences wrap; compare them as distances. */
	for (i = 0; i < vm->cfg.nr_vcpus; i++) {
		t = s[i].tsc > s[i].tsc_log.max ? s[i].tsc : s[i].tsc_log.max;
		t -= s[i].tsc_offset - s[0].tsc_offset;
		if (!i || (int64_t)(t - base) > 0)
			base = t;
	}
	r = vcpu__set_tsc(&vm->vcpu[0], base);
	if (!r)
		r = vcpu__tsc_offset(&vm->vcpu[0], KVM_GET_DEVICE_ATTR, &ofs0);
	for (i = 1; !r && i < vm->cfg.nr_vcpus; i++) {
		ofs = ofs0 + (s[i].tsc_offset - s[0].tsc_offset);
		r = vcpu__tsc_offset(&vm->vcpu[i], KVM_SET_DEVICE_ATTR, &ofs);
	}
	return r;
}

/*
 * kemari.rst 6: with every vCPU out of KVM_RUN, each ring holds this
 * checkpoint's pages from its fetch index on.  Read each entry's flags
 * with load-acquire, hand the entry back with store-release, then reset.
 */
/* The bitmap variant: O(guest size) whatever the dirty count. */
static long vm__harvest_bitmap(struct vm *vm, uint64_t *gfns, size_t max)
{
	uint64_t pages = vm->cfg.mem_size / PAGE_SIZE, w, g;
	struct kvm_dirty_log log = { .slot = 0, .dirty_bitmap = vm->bitmap };
	struct kvm_clear_dirty_log clear = {
		.slot = 0, .num_pages = pages, .dirty_bitmap = vm->bitmap,
	};
	size_t n = 0;
	int r;

	r = IOCTL(vm->fd, KVM_GET_DIRTY_LOG, &log);
	if (r)
		return r;
	for (w = 0; w < (pages + 63) / 64; w++) {
		uint64_t bits = vm->bitmap[w];

		while (bits) {
			g = w * 64 + __builtin_ctzll(bits);
			bits &= bits - 1;
			if (n == max)
				return -E2BIG;
			gfns[n++] = g;
		}
	}
	r = IOCTL(vm->fd, KVM_CLEAR_DIRTY_LOG, &clear);
	return r ? r : (long)n;
}

long vm__harvest(struct vm *vm, uint64_t *gfns, size_t max)
{
	uint32_t entries = vm->cfg.ring_entries;
	size_t n = 0;
	unsigned int i;

	if (vm->cfg.harvest_bitmap)
		return vm__harvest_bitmap(vm, gfns, max);

	for (i = 0; i < vm->cfg.nr_vcpus; i++) {
		struct vcpu *vcpu = &vm->vcpu[i];

		for (;;) {
			struct kvm_dirty_gfn *e =
				&vcpu->ring[vcpu->ring_fetch % entries];
			uint32_t flags = __atomic_load_n(&e->flags,
							 __ATOMIC_ACQUIRE);

			if (!(flags & KVM_DIRTY_GFN_F_DIRTY))
				break;
			if (n == max)
				return -E2BIG;
			if (e->slot == 0 &&
			    e->offset < vm->cfg.mem_size / PAGE_SIZE)
				gfns[n++] = e->offset;
			__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET,
					 __ATOMIC_RELEASE);
			vcpu->ring_fetch++;
		}
	}
	if (ioctl(vm->fd, KVM_RESET_DIRTY_RINGS, 0) < 0) {
		warn_msg("KVM_RESET_DIRTY_RINGS: %s", strerror(errno));
		return -errno;
	}
	return n;
}

int vm__freeze(struct vm *vm)
{
	int r;

	if (!vm->kemari)
		return -EOPNOTSUPP;
	r = IOCTL(vm->fd, KVM_KEMARI_FREEZE, 0);	/* 1: joined one */
	return r < 0 ? r : 0;
}

int vm__resume(struct vm *vm)
{
	return vm->kemari ? IOCTL(vm->fd, KVM_KEMARI_RESUME, 0) : 0;
}
