// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util.h"
#include "vmm.h"

int vmm__init(struct vmm *vmm, const struct guest_config *gc)
{
	vmm->gc = *gc;
	pthread_mutex_init(&vmm->lock, NULL);
	pthread_cond_init(&vmm->cond, NULL);
	/* A page may be in more than one vCPU's ring. */
	vmm->max_gfns = vmm->vm.cfg.mem_size / PAGE_SIZE +
			(uint64_t)vmm->vm.cfg.nr_vcpus * vmm->vm.cfg.ring_entries + 1;
	vmm->gfns = calloc(vmm->max_gfns, sizeof(*vmm->gfns));
	vmm->seen = calloc(vmm->vm.cfg.mem_size / PAGE_SIZE / 64 + 1, 8);
	return vmm->gfns && vmm->seen ? 0 : -ENOMEM;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;
	unsigned int i;

	for (i = 0; i < PAGE_SIZE / 8; i++)
		if (w[i])
			return false;
	return true;
}

/*
 * Every page of the full checkpoint that is not zero.  Anonymous memory
 * that was never touched (neither present nor swapped, says pagemap) is
 * zero and is skipped unread.
 */
static long vmm__nonzero_pages(struct vmm *vmm)
{
	uint64_t gfn, pages = vmm->vm.cfg.mem_size / PAGE_SIZE, e[512];
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	uintptr_t base = (uintptr_t)vmm->vm.mem / PAGE_SIZE;
	long n = 0;

	for (gfn = 0; gfn < pages; gfn++) {
		uint8_t *p = vmm->vm.mem + gfn * PAGE_SIZE;
		unsigned int k = gfn % 512;

		/* pagemap: bit 63 present, bit 62 swapped */
		if (!k && (fd < 0 || pread(fd, e, sizeof(e), (base + gfn) * 8) <= 0))
			memset(e, 0xff, sizeof(e));
		if (!(e[k] & (3ULL << 62)))
			continue;
		if (!page_is_zero(p))
			vmm->gfns[n++] = gfn;
	}
	if (fd >= 0)
		close(fd);
	return n;
}

/* A page may be in more than one vCPU's ring: send it once. */
static long vmm__dedup(struct vmm *vmm, long n)
{
	long i, k = 0;

	for (i = 0; i < n; i++) {
		uint64_t g = vmm->gfns[i];

		if (vmm->seen[g / 64] & (1ULL << (g % 64)))
			continue;
		vmm->seen[g / 64] |= 1ULL << (g % 64);
		vmm->gfns[k++] = g;
	}
	for (i = 0; i < k; i++)
		vmm->seen[vmm->gfns[i] / 64] = 0;
	return k;
}

/*
 * A full checkpoint carries the whole block device, read back from the
 * file (the doorbells rung so far have completed): a joining secondary's
 * disk may hold anything.
 */
static int vmm__read_disk(struct vmm *vmm)
{
	uint32_t s, n = vmm->vm.cfg.nr_vcpus * ABI_SECTORS_PER_VCPU;
	struct ck_blk *b = vmm->dev.blk_log;

	for (s = 0; s < n; s++) {
		ssize_t r = pread(vmm->dev.blk_fd, b[s].data, ABI_SECTOR_SIZE,
				  (off_t)s * ABI_SECTOR_SIZE);

		b[s].sector = s;
		if (r != ABI_SECTOR_SIZE)
			return r < 0 ? -errno : -EIO;	/* short: -EIO */
	}
	vmm->dev.nr_blk_log = n;
	return 0;
}

/*
 * With every vCPU out of KVM_RUN: complete the doorbells already rung,
 * harvest the dirty rings, and save everything.  The status page is
 * written by the device model, not by a vCPU, so no ring reports it: it
 * goes into every checkpoint.
 */
int vmm__checkpoint(struct vmm *vmm, bool full)
{
	struct vm *vm = &vmm->vm;
	struct ck_vm head = {
		.seq = ++vmm->seq,
		.mem_size = vm->cfg.mem_size,
		.nr_vcpus = vm->cfg.nr_vcpus,
		.full = full,
		.tsc_khz = vm->cfg.tsc_khz,	/* kemari.rst 7 */
	};
	struct vcpu_state s;
	struct irq_state irq;
	long n;
	unsigned int i;
	int r;

	if (vmm->prepare)
		vmm->prepare(vmm, head.seq);
	devices__drain(&vmm->dev);
	devices__settle(&vmm->dev);
	vmm->last_harvest_ns = now_ns();
	n = vm__harvest(vm, vmm->gfns, vmm->max_gfns - 1);
	vmm->last_harvest_ns = now_ns() - vmm->last_harvest_ns;
	if (n < 0)
		return n;
	if (full) {
		n = vmm__nonzero_pages(vmm);
	} else {
		vmm->gfns[n++] = ABI_STATUS / PAGE_SIZE;
		n = vmm__dedup(vmm, n);
	}

	ck__reset(&vmm->ck);
	ck__add_vm(&vmm->ck, &head);
	ck__add_pages(&vmm->ck, vm->mem, vmm->gfns, n);
	for (i = 0; i < vm->cfg.nr_vcpus; i++) {
		r = vcpu__save(&vm->vcpu[i], &s);
		if (r)
			return r;
		ck__add_vcpu(&vmm->ck, i, &s);
	}
	r = vm__save_irq(vm, &irq);
	if (r)
		return r;
	ck__add_irq(&vmm->ck, &irq);
	pthread_mutex_lock(&vmm->dev.lock);
	r = full ? vmm__read_disk(vmm) : 0;
	if (r) {
		pthread_mutex_unlock(&vmm->dev.lock);
		return r;
	}
	ck__add_dev(&vmm->ck, vmm->dev.blk_log, vmm->dev.nr_blk_log,
		    vmm->dev.out_log, vmm->dev.nr_out_log, CK_DEV_OUTPUT_HELD);
	vmm->dev.nr_blk_log = 0;
	pthread_mutex_unlock(&vmm->dev.lock);
	ck__add_end(&vmm->ck);
	vmm->last_pages = n;
	vmm->ck_full = full;
	return 0;
}

int vmm__request_checkpoint(struct vmm *vmm, bool full)
{
	if (full)
		__atomic_store_n(&vmm->want_full, true, __ATOMIC_RELEASE);
	return vm__freeze(&vmm->vm);
}

static void on_kick(int sig)
{
	(void)sig;
}

/*
 * Without Kemari (bring-up), KVM does not freeze the VM for us: stop the
 * other vCPUs with immediate_exit and a signal, as any VMM would.
 */
static void vmm__kick_all(struct vmm *vmm)
{
	unsigned int i;

	for (i = 0; i < vmm->vm.cfg.nr_vcpus; i++) {
		if (vmm->vcpu_done[i])
			continue;
		vmm->vm.vcpu[i].run->immediate_exit = 1;
		pthread_kill(vmm->thread[i], SIGUSR2);
	}
}

/* The leader of a freeze, with vmm->lock held (kemari.rst 4). */
static void vmm__sync(struct vmm *vmm, uint64_t t0)
{
	int r;

	if (!vmm->vm.kemari)
		vmm__kick_all(vmm);
	while (vmm->in_run)
		pthread_cond_wait(&vmm->cond, &vmm->lock);
	r = vmm__checkpoint(vmm, __atomic_exchange_n(&vmm->want_full, false,
						     __ATOMIC_ACQ_REL));
	if (r)
		die("checkpoint %llu failed: %s", (unsigned long long)vmm->seq,
		    strerror(-r));
	if (vmm->commit)
		vmm->commit(vmm, vmm->seq);
	r = vm__resume(&vmm->vm);
	if (r < 0)
		die("KVM_KEMARI_RESUME: %s", strerror(-r));
	stats__checkpoint(&vmm->stats, now_ns() - t0, vmm->last_harvest_ns,
			  vmm->last_pages, vmm->ck.len);
	vmm->freeze = false;
	pthread_cond_broadcast(&vmm->cond);
}

static void vmm__io(struct vmm *vmm, struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;

	if (run->io.direction != KVM_EXIT_IO_OUT)
		die("vcpu %u: read of port %#x", vcpu->id, run->io.port);
	switch (run->io.port) {
	case ABI_PORT_DONE:
		vmm->vcpu_done[vcpu->id] = true;
		vmm->done++;
		break;
	default:
		die("vcpu %u: write to unknown port %#x", vcpu->id,
		    run->io.port);
	}
}

/* Where a vCPU was when something went wrong, for the error message. */
static void vcpu__dump(struct vcpu *vcpu)
{
	struct kvm_vcpu_events ev;
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (ioctl(vcpu->fd, KVM_GET_REGS, &regs) ||
	    ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) ||
	    ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &ev))
		return;
	warn_msg("vcpu %u: rip %#llx rsp %#llx rflags %#llx cr0 %#llx cr3 %#llx cr4 %#llx efer %#llx exception %u/%u nr %u",
		 vcpu->id, regs.rip, regs.rsp, regs.rflags, sregs.cr0,
		 sregs.cr3, sregs.cr4, sregs.efer, ev.exception.injected,
		 ev.exception.pending, ev.exception.nr);
}

static void *vcpu__thread(void *arg)
{
	struct vcpu *vcpu = arg;
	struct vmm *vmm = (struct vmm *)((char *)vcpu->vm -
					 offsetof(struct vmm, vm));
	int r, err;

	pthread_mutex_lock(&vmm->lock);
	while (!vmm->vcpu_done[vcpu->id]) {
		while (vmm->freeze)
			pthread_cond_wait(&vmm->cond, &vmm->lock);
		vmm->in_run++;
		pthread_mutex_unlock(&vmm->lock);
		r = ioctl(vcpu->fd, KVM_RUN, 0);
		err = errno;
		vcpu->run->immediate_exit = 0;
		pthread_mutex_lock(&vmm->lock);
		vmm->in_run--;
		pthread_cond_broadcast(&vmm->cond);
		if (r < 0) {
			if (err == EINTR || err == EAGAIN)
				continue;
			die("vcpu %u: KVM_RUN: %s", vcpu->id, strerror(err));
		}
		/* kemari.rst 5; this VMM registers no coalesced MMIO zone. */
		if (vcpu->run->flags & KVM_RUN_KEMARI_SYNC)
			die("vcpu %u: a coalesced MMIO sync, but no zone was registered",
			    vcpu->id);
		switch (vcpu->run->exit_reason) {
		case KVM_EXIT_KEMARI_SYNC:
			vcpu->tsc_log = vcpu->run->kemari.tsc;
			/* fall through */
		case KVM_EXIT_DIRTY_RING_FULL:
			if (!vmm->freeze) {
				vmm->freeze = true;
				vmm__sync(vmm, now_ns());
			}
			break;
		case KVM_EXIT_IO:
			vmm__io(vmm, vcpu);
			break;
		default:
			vcpu__dump(vcpu);
			die("vcpu %u: unexpected exit reason %u", vcpu->id,
			    vcpu->run->exit_reason);
		}
	}
	pthread_mutex_unlock(&vmm->lock);
	return NULL;
}

int vmm__run(struct vmm *vmm)
{
	unsigned int i;
	int r;

	signal(SIGUSR2, on_kick);
	pthread_mutex_lock(&vmm->lock);
	for (i = 0; i < vmm->vm.cfg.nr_vcpus; i++) {
		r = pthread_create(&vmm->thread[i], NULL, vcpu__thread,
				   &vmm->vm.vcpu[i]);
		if (r)
			die("pthread_create: %s", strerror(r));
	}
	pthread_mutex_unlock(&vmm->lock);
	for (i = 0; i < vmm->vm.cfg.nr_vcpus; i++)
		pthread_join(vmm->thread[i], NULL);
	return 0;
}

int vmm__verify(struct vmm *vmm)
{
	const struct guest_config *gc = &vmm->gc;
	uint64_t records = 0, checks = 0, errors = 0, tsc_errors = 0;
	unsigned int id, s, i, sectors = 0, bad = 0;
	uint64_t buf[ABI_SECTOR_SIZE / 8];

	devices__drain(&vmm->dev);
	for (id = 0; id < gc->nr_vcpus; id++) {
		const struct vstate *st =
			(const void *)(vmm->vm.mem + ABI_VSTATE(id));
		const uint64_t *table =
			(const void *)(vmm->vm.mem + ABI_SECTORS(id));

		if (st->seq != gc->records)
			bad++;
		records += st->seq;
		checks += st->checks;
		errors += st->check_errors;
		tsc_errors += st->tsc_errors;
		for (s = 0; s < ABI_SECTORS_PER_VCPU; s++) {
			uint64_t sector = id * ABI_SECTORS_PER_VCPU + s;

			if (pread(vmm->dev.blk_fd, buf, sizeof(buf),
				  sector * ABI_SECTOR_SIZE) != sizeof(buf))
				die("reading the block device: %m");
			for (i = 0; i < ABI_SECTOR_SIZE / 8; i++) {
				uint64_t want = table[s] ?
					abi_sector_word(id, s, table[s] - 1, i) : 0;

				if (buf[i] != want)
					break;
			}
			if (i < ABI_SECTOR_SIZE / 8)
				bad++;
			else
				sectors++;
		}
	}
	bad += errors + tsc_errors;
	info_msg("verify: %s: %llu records, %llu page checks, %llu check errors, %llu tsc errors, %u/%u sectors as the guest wrote them",
		 bad ? "FAILED" : "ok", (unsigned long long)records,
		 (unsigned long long)checks, (unsigned long long)errors,
		 (unsigned long long)tsc_errors, sectors,
		 gc->nr_vcpus * ABI_SECTORS_PER_VCPU);
	return bad ? -EIO : 0;
}
