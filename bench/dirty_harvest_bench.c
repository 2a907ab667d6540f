// SPDX-License-Identifier: GPL-2.0-only
/*
 * kemari-dirty-bench: what harvesting the dirty set of one checkpoint
 * costs with the dirty ring (read the entries, KVM_RESET_DIRTY_RINGS)
 * and with the bitmap (KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG, manual
 * protect), for guest memory of 1, 4 and 16 GiB and 10 to 100000 dirty
 * pages per checkpoint.
 *
 * A 64-bit guest stores to N pages spread evenly over its memory slot,
 * then makes an OUT; the VMM then harvests and re-protects.  Only the
 * harvest and re-protection are timed, in the same boot for both
 * variants; the median of -r rounds is printed with the ratio bitmap/ring.
 * A ring that fills up in the middle of a round (more dirty pages than
 * entries) is harvested then, and that time counts too.  Guest memory is
 * mapped with MAP_NORESERVE, so a size larger than the machine works as
 * long as the dirtied pages fit; -s limits the largest size in GiB.
 * It needs only /dev/kvm, so it runs as well on real hardware.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "bench.h"

#define PAGE		4096ull
#define GIB		(1ull << 30)
#define LOW_SIZE	(2ull << 20)	/* slot 0: code and page tables */
#define CODE_GPA	0x1000ull
#define PML4_GPA	0x2000ull
#define PDPT_GPA	0x3000ull
#define PD_GPA		0x4000ull	/* 2 MiB pages, up to 32 GiB */
#define DATA_GPA	(4 * GIB)
#define DATA_SLOT	1
#define MAX_GIB		28
#define PORT		0xe0
#define RING_ENTRIES	65536
#define MAX_ROUNDS	32

/* rdi: first address, rsi: count, rdx: stride; store, then OUT. */
static const uint8_t guest_code[] = {
	0x48, 0x89, 0x07,	/* 1: mov [rdi], rax	*/
	0x48, 0x01, 0xd7,	/* add rdi, rdx		*/
	0x48, 0xff, 0xce,	/* dec rsi		*/
	0x75, 0xf5,		/* jnz 1b		*/
	0xe6, PORT,		/* out PORT, al		*/
	0xf4,			/* hlt			*/
};

struct bench_vm {
	bool ring;
	void *low, *data;
	int vm_fd, vcpu_fd;
	struct kvm_run *run;
	struct kvm_dirty_gfn *gfns;
	uint32_t fetch;
	uint64_t size;
	unsigned long *bitmap;
};

static int kvm_fd;

static void *guest_mem(uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		die("mmap guest memory");
	/* One dirty 4 KiB page must not pull in 2 MiB. */
	madvise(p, size, MADV_NOHUGEPAGE);
	return p;
}

static void set_slot(struct bench_vm *b, uint32_t slot, uint64_t gpa,
		     uint64_t size, void *hva, uint32_t flags)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot, .flags = flags, .guest_phys_addr = gpa,
		.memory_size = size, .userspace_addr = (uintptr_t)hva,
	};

	if (ioctl(b->vm_fd, KVM_SET_USER_MEMORY_REGION, &r))
		die("KVM_SET_USER_MEMORY_REGION");
}

/* Identity-map the first 32 GiB with 2 MiB pages; enter long mode. */
static void bench__long_mode(struct bench_vm *b, uint8_t *low)
{
	struct kvm_segment cs = {
		.selector = 8, .limit = 0xffffffff, .type = 11, .present = 1,
		.s = 1, .l = 1, .g = 1,
	};
	struct kvm_segment ds = {
		.selector = 16, .limit = 0xffffffff, .type = 3, .present = 1,
		.s = 1, .db = 1, .g = 1,
	};
	uint64_t *pml4 = (uint64_t *)(low + PML4_GPA);
	uint64_t *pdpt = (uint64_t *)(low + PDPT_GPA);
	uint64_t *pd = (uint64_t *)(low + PD_GPA);
	struct {
		struct kvm_cpuid2 c;
		struct kvm_cpuid_entry2 e[256];
	} cpuid = { .c.nent = 256 };
	struct kvm_sregs sregs;
	int i;

	pml4[0] = PDPT_GPA | 3;
	for (i = 0; i < 32; i++)
		pdpt[i] = (PD_GPA + i * PAGE) | 3;
	for (i = 0; i < 32 * 512; i++)
		pd[i] = ((uint64_t)i << 21) | 0x83;

	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, &cpuid) ||
	    ioctl(b->vcpu_fd, KVM_SET_CPUID2, &cpuid))
		die("KVM_SET_CPUID2");
	if (ioctl(b->vcpu_fd, KVM_GET_SREGS, &sregs))
		die("KVM_GET_SREGS");
	sregs.cr0 = 0x80050033;		/* PG, AM, WP, NE, ET, MP, PE */
	sregs.cr3 = PML4_GPA;
	sregs.cr4 = 0x20;		/* PAE */
	sregs.efer = 0x500;		/* LMA, LME */
	sregs.cs = cs;
	sregs.ds = sregs.es = sregs.ss = sregs.fs = sregs.gs = ds;
	if (ioctl(b->vcpu_fd, KVM_SET_SREGS, &sregs))
		die("KVM_SET_SREGS");
}

static void bench__create(struct bench_vm *b, bool ring, uint64_t size)
{
	struct kvm_enable_cap cap = { 0 };
	uint8_t *low = guest_mem(LOW_SIZE);

	memset(b, 0, sizeof(*b));
	b->low = low;
	b->data = guest_mem(size);
	b->ring = ring;
	b->size = size;
	b->vm_fd = bench_vm_create(kvm_fd, 0);
	if (ring) {
		cap.cap = KVM_CAP_DIRTY_LOG_RING;
		cap.args[0] = RING_ENTRIES * sizeof(struct kvm_dirty_gfn);
	} else {
		cap.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
		cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
	}
	if (ioctl(b->vm_fd, KVM_ENABLE_CAP, &cap))
		die(ring ? "KVM_CAP_DIRTY_LOG_RING" : "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2");

	memcpy(low + CODE_GPA, guest_code, sizeof(guest_code));
	set_slot(b, 0, 0, LOW_SIZE, low, 0);
	set_slot(b, DATA_SLOT, DATA_GPA, size, b->data,
		 KVM_MEM_LOG_DIRTY_PAGES);
	if (!ring) {
		b->bitmap = calloc(size / PAGE / 8, 1);
		if (!b->bitmap)
			die("calloc bitmap");
	}

	b->run = bench_vcpu_create(kvm_fd, b->vm_fd, &b->vcpu_fd);
	if (ring) {
		b->gfns = mmap(NULL, RING_ENTRIES * sizeof(struct kvm_dirty_gfn),
			       PROT_READ | PROT_WRITE, MAP_SHARED, b->vcpu_fd,
			       KVM_DIRTY_LOG_PAGE_OFFSET * PAGE);
		if (b->gfns == MAP_FAILED)
			die("mmap dirty ring");
	}
	bench__long_mode(b, low);
}

static void bench__destroy(struct bench_vm *b)
{
	close(b->vcpu_fd);
	close(b->vm_fd);
	munmap(b->low, LOW_SIZE);
	munmap(b->data, b->size);
	free(b->bitmap);
}

/* Harvest and re-protect; returns the pages found. */
static uint64_t bench__harvest(struct bench_vm *b)
{
	struct kvm_clear_dirty_log clear = {
		.slot = DATA_SLOT, .num_pages = b->size / PAGE,
		.dirty_bitmap = b->bitmap,
	};
	struct kvm_dirty_log get = {
		.slot = DATA_SLOT, .dirty_bitmap = b->bitmap,
	};
	struct kvm_dirty_gfn *e;
	uint64_t n = 0, i;

	if (b->ring) {
		for (;;) {
			e = &b->gfns[b->fetch % RING_ENTRIES];
			if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) &
			      KVM_DIRTY_GFN_F_DIRTY))
				break;
			__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET,
					 __ATOMIC_RELEASE);
			b->fetch++;
			n++;
		}
		if (ioctl(b->vm_fd, KVM_RESET_DIRTY_RINGS, 0) != (int)n)
			die("KVM_RESET_DIRTY_RINGS");
		return n;
	}

	if (ioctl(b->vm_fd, KVM_GET_DIRTY_LOG, &get))
		die("KVM_GET_DIRTY_LOG");
	for (i = 0; i < b->size / PAGE / 64; i++)
		n += __builtin_popcountl(b->bitmap[i]);
	if (ioctl(b->vm_fd, KVM_CLEAR_DIRTY_LOG, &clear))
		die("KVM_CLEAR_DIRTY_LOG");
	return n;
}

/* One checkpoint's worth of guest stores; returns the harvest time. */
static double bench__round(struct bench_vm *b, uint64_t dirty)
{
	uint64_t stride = b->size / dirty / PAGE * PAGE, found = 0;
	struct kvm_regs regs = {
		.rip = CODE_GPA, .rflags = 2, .rdi = DATA_GPA, .rsi = dirty,
		.rdx = stride, .rax = 0x4b4d,
	};
	double t, ns = 0;

	if (ioctl(b->vcpu_fd, KVM_SET_REGS, &regs))
		die("KVM_SET_REGS");
	for (;;) {
		if (ioctl(b->vcpu_fd, KVM_RUN, 0)) {
			if (errno == EINTR)
				continue;
			die("KVM_RUN");
		}
		if (b->run->exit_reason == KVM_EXIT_IO)
			break;
		if (b->run->exit_reason != KVM_EXIT_DIRTY_RING_FULL) {
			fprintf(stderr, "kemari-dirty-bench: exit reason %u\n",
				b->run->exit_reason);
			exit(1);
		}
		t = now_ns();
		found += bench__harvest(b);
		ns += now_ns() - t;
	}
	t = now_ns();
	found += bench__harvest(b);
	ns += now_ns() - t;
	/*
	 * A page whose store was cut short by a full ring is stored again
	 * after the reset re-protected it, and pushed twice: the ring may
	 * hold a few duplicates, the bitmap never.
	 */
	if (found < dirty || (!b->ring && found != dirty)) {
		fprintf(stderr, "kemari-dirty-bench: %s found %lu dirty pages, want %lu\n",
			b->ring ? "ring" : "bitmap", (unsigned long)found,
			(unsigned long)dirty);
		exit(1);
	}
	return ns;
}

static double bench__median(struct bench_vm *b, uint64_t dirty, int rounds)
{
	double ns[MAX_ROUNDS];
	int r;

	bench__round(b, dirty);		/* first touch: map the pages */
	for (r = 0; r < rounds; r++)
		ns[r] = bench__round(b, dirty);
	return median(ns, rounds);
}

int main(int argc, char *argv[])
{
	static const uint64_t sizes[] = { 1, 4, 16 };
	static const uint64_t counts[] = { 10, 100, 1000, 10000, 100000 };
	int rounds = 3, max_gib = 16, opt, s, c;
	struct bench_vm ring, bitmap;
	double tr, tb;

	bench_name = "kemari-dirty-bench";
	while ((opt = getopt(argc, argv, "r:s:")) != -1) {
		if (opt == 'r')
			rounds = atoi(optarg);
		else if (opt == 's')
			max_gib = atoi(optarg);
		else
			goto usage;
	}
	if (rounds < 1 || rounds > MAX_ROUNDS || max_gib < 1 || max_gib > MAX_GIB)
		goto usage;

	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0)
		die("open /dev/kvm");
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING) <= 0) {
		fprintf(stderr, "kemari-dirty-bench: no KVM_CAP_DIRTY_LOG_RING\n");
		return 4;
	}

	printf("# median of %d rounds, us per checkpoint to harvest and re-protect\n",
	       rounds);
	printf("# %6s %8s %12s %12s %14s\n", "GiB", "dirty", "ring", "bitmap",
	       "bitmap/ring");
	for (s = 0; s < 3; s++) {
		if (sizes[s] > (uint64_t)max_gib)
			break;
		uint64_t crossover = 0;

		bench__create(&ring, true, sizes[s] * GIB);
		bench__create(&bitmap, false, sizes[s] * GIB);
		for (c = 0; c < 5; c++) {
			tr = bench__median(&ring, counts[c], rounds);
			tb = bench__median(&bitmap, counts[c], rounds);
			printf("  %6lu %8lu %12.1f %12.1f %14.2f\n",
			       (unsigned long)sizes[s], (unsigned long)counts[c],
			       tr / 1e3, tb / 1e3, tb / tr);
			/* For scripts/plot-bench.sh: GiB, dirty, ring us, bitmap us */
			printf("CSV,dirty,%lu,%lu,%.1f,%.1f\n",
			       (unsigned long)sizes[s], (unsigned long)counts[c],
			       tr / 1e3, tb / 1e3);
			if (!crossover && tb < tr)
				crossover = counts[c];
			fflush(stdout);
		}
		if (crossover)
			printf("# %lu GiB: the bitmap wins from %lu dirty pages on (of those measured)\n",
			       (unsigned long)sizes[s], (unsigned long)crossover);
		else
			printf("# %lu GiB: the ring wins at every dirty count measured\n",
			       (unsigned long)sizes[s]);
		bench__destroy(&ring);
		bench__destroy(&bitmap);
	}
	return 0;

usage:
	fprintf(stderr, "usage: %s [-r rounds (<= %d)] [-s largest GiB (<= %d)]\n",
		argv[0], MAX_ROUNDS, MAX_GIB);
	return 2;
}
