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
 *
 * Two more tables explain the first.  "Where the time goes" splits each
 * variant in two: reading the ring entries against KVM_RESET_DIRTY_RINGS,
 * and KVM_GET_DIRTY_LOG (with the scan of the bitmap) against
 * KVM_CLEAR_DIRTY_LOG.  Both re-protect the same pages, so their second
 * halves cost about the same, and the ring can only win by what the first
 * halves save.  "Per-vCPU rings" spreads the same dirty pages over 1 to 8
 * vCPUs: if harvesting 8 rings costs what one does, a per-VM ring (one
 * list for the whole VM, which issue 4 asks to justify first) has nothing
 * to win at a sync point.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
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
#define MAX_VCPUS	8

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
	int vm_fd;
	unsigned int nr_vcpus;
	int vcpu_fd[MAX_VCPUS];
	struct kvm_run *run[MAX_VCPUS];
	struct kvm_dirty_gfn *gfns[MAX_VCPUS];
	uint32_t fetch[MAX_VCPUS];
	uint64_t size;
	unsigned long *bitmap;
};

/* One harvest's time, in its two halves (ns). */
struct split {
	double collect;		/* ring: read entries; bitmap: GET + scan */
	double protect;		/* ring: RESET_DIRTY_RINGS; bitmap: CLEAR */
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
static void bench__long_mode(uint8_t *low, int vcpu_fd)
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
	    ioctl(vcpu_fd, KVM_SET_CPUID2, &cpuid))
		die("KVM_SET_CPUID2");
	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs))
		die("KVM_GET_SREGS");
	sregs.cr0 = 0x80050033;		/* PG, AM, WP, NE, ET, MP, PE */
	sregs.cr3 = PML4_GPA;
	sregs.cr4 = 0x20;		/* PAE */
	sregs.efer = 0x500;		/* LMA, LME */
	sregs.cs = cs;
	sregs.ds = sregs.es = sregs.ss = sregs.fs = sregs.gs = ds;
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs))
		die("KVM_SET_SREGS");
}

static void bench__create(struct bench_vm *b, bool ring, uint64_t size,
			  unsigned int nr_vcpus)
{
	struct kvm_enable_cap cap = { 0 };
	uint8_t *low = guest_mem(LOW_SIZE);
	unsigned int v;

	memset(b, 0, sizeof(*b));
	b->low = low;
	b->data = guest_mem(size);
	b->ring = ring;
	b->size = size;
	b->nr_vcpus = nr_vcpus;
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

	for (v = 0; v < nr_vcpus; v++) {
		b->run[v] = bench_vcpu_create_id(kvm_fd, b->vm_fd, v,
						 &b->vcpu_fd[v]);
		if (ring) {
			b->gfns[v] = mmap(NULL, RING_ENTRIES * sizeof(struct kvm_dirty_gfn),
					  PROT_READ | PROT_WRITE, MAP_SHARED,
					  b->vcpu_fd[v],
					  KVM_DIRTY_LOG_PAGE_OFFSET * PAGE);
			if (b->gfns[v] == MAP_FAILED)
				die("mmap dirty ring");
		}
		bench__long_mode(low, b->vcpu_fd[v]);
	}
}

static void bench__destroy(struct bench_vm *b)
{
	unsigned int v;

	for (v = 0; v < b->nr_vcpus; v++) {
		if (b->ring)
			munmap(b->gfns[v], RING_ENTRIES * sizeof(struct kvm_dirty_gfn));
		munmap(b->run[v], ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0));
		close(b->vcpu_fd[v]);
	}
	close(b->vm_fd);
	munmap(b->low, LOW_SIZE);
	munmap(b->data, b->size);
	free(b->bitmap);
}

/* Harvest and re-protect, adding the time of each half; returns the pages. */
static uint64_t bench__harvest(struct bench_vm *b, struct split *t)
{
	struct kvm_clear_dirty_log clear = {
		.slot = DATA_SLOT, .num_pages = b->size / PAGE,
		.dirty_bitmap = b->bitmap,
	};
	struct kvm_dirty_log get = {
		.slot = DATA_SLOT, .dirty_bitmap = b->bitmap,
	};
	double t0 = now_ns(), t1;
	struct kvm_dirty_gfn *e;
	uint64_t n = 0, i;
	unsigned int v;

	if (b->ring) {
		for (v = 0; v < b->nr_vcpus; v++) {
			for (;;) {
				e = &b->gfns[v][b->fetch[v] % RING_ENTRIES];
				if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) &
				      KVM_DIRTY_GFN_F_DIRTY))
					break;
				__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET,
						 __ATOMIC_RELEASE);
				b->fetch[v]++;
				n++;
			}
		}
		t1 = now_ns();
		if (ioctl(b->vm_fd, KVM_RESET_DIRTY_RINGS, 0) != (int)n)
			die("KVM_RESET_DIRTY_RINGS");
	} else {
		if (ioctl(b->vm_fd, KVM_GET_DIRTY_LOG, &get))
			die("KVM_GET_DIRTY_LOG");
		for (i = 0; i < b->size / PAGE / 64; i++)
			n += __builtin_popcountl(b->bitmap[i]);
		t1 = now_ns();
		if (ioctl(b->vm_fd, KVM_CLEAR_DIRTY_LOG, &clear))
			die("KVM_CLEAR_DIRTY_LOG");
	}
	t->collect += t1 - t0;
	t->protect += now_ns() - t1;
	return n;
}

/* Run vCPU v to its OUT, harvesting whenever a ring fills. */
static uint64_t bench__run_vcpu(struct bench_vm *b, unsigned int v,
				struct split *t)
{
	uint64_t found = 0;

	for (;;) {
		if (ioctl(b->vcpu_fd[v], KVM_RUN, 0)) {
			if (errno == EINTR)
				continue;
			die("KVM_RUN");
		}
		if (b->run[v]->exit_reason == KVM_EXIT_IO)
			return found;
		if (b->run[v]->exit_reason != KVM_EXIT_DIRTY_RING_FULL) {
			fprintf(stderr, "kemari-dirty-bench: exit reason %u\n",
				b->run[v]->exit_reason);
			exit(1);
		}
		found += bench__harvest(b, t);
	}
}

/*
 * One checkpoint's worth of guest stores, spread evenly over the slot and
 * dealt out to the vCPUs in turn; returns the harvest time.
 */
static double bench__round(struct bench_vm *b, uint64_t dirty,
			   struct split *split)
{
	uint64_t stride = b->size / dirty / PAGE * PAGE, found = 0;
	unsigned int v, nr = b->nr_vcpus;
	struct split t = { 0, 0 };

	for (v = 0; v < nr; v++) {
		struct kvm_regs regs = {
			.rip = CODE_GPA, .rflags = 2,
			.rdi = DATA_GPA + v * stride,
			.rsi = dirty / nr + (v < dirty % nr),
			.rdx = stride * nr, .rax = 0x4b4d,
		};

		if (!regs.rsi)
			continue;
		if (ioctl(b->vcpu_fd[v], KVM_SET_REGS, &regs))
			die("KVM_SET_REGS");
		found += bench__run_vcpu(b, v, &t);
	}
	found += bench__harvest(b, &t);
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
	if (split)
		*split = t;
	return t.collect + t.protect;
}

/* The median total, and the halves of the round nearest to it. */
static double bench__median(struct bench_vm *b, uint64_t dirty, int rounds,
			    struct split *split)
{
	double ns[MAX_ROUNDS], total[MAX_ROUNDS], mid;
	struct split t[MAX_ROUNDS];
	int r, best = 0;

	bench__round(b, dirty, NULL);	/* first touch: map the pages */
	for (r = 0; r < rounds; r++)
		total[r] = ns[r] = bench__round(b, dirty, &t[r]);
	mid = median(ns, rounds);
	for (r = 1; r < rounds; r++)
		if (fabs(total[r] - mid) < fabs(total[best] - mid))
			best = r;
	if (split)
		*split = t[best];
	return mid;
}

/* Where the time goes, at the largest size measured. */
static void table_split(uint64_t gib, int rounds)
{
	static const uint64_t counts[] = { 100, 1000, 10000 };
	struct bench_vm ring, bitmap;
	struct split sr, sb;
	int c;

	printf("\n# where the time goes, %lu GiB, us: ring = read entries + RESET_DIRTY_RINGS; bitmap = GET_DIRTY_LOG and scan + CLEAR_DIRTY_LOG\n",
	       (unsigned long)gib);
	printf("# %8s %10s %10s %10s %10s %14s\n", "dirty", "ring read",
	       "reset", "get+scan", "clear", "clear/reset");
	bench__create(&ring, true, gib * GIB, 1);
	bench__create(&bitmap, false, gib * GIB, 1);
	for (c = 0; c < 3; c++) {
		bench__median(&ring, counts[c], rounds, &sr);
		bench__median(&bitmap, counts[c], rounds, &sb);
		printf("  %8lu %10.1f %10.1f %10.1f %10.1f %14.2f\n",
		       (unsigned long)counts[c], sr.collect / 1e3,
		       sr.protect / 1e3, sb.collect / 1e3, sb.protect / 1e3,
		       sb.protect / sr.protect);
		printf("CSV,split,%lu,%lu,%.1f,%.1f,%.1f,%.1f\n",
		       (unsigned long)gib, (unsigned long)counts[c],
		       sr.collect / 1e3, sr.protect / 1e3, sb.collect / 1e3,
		       sb.protect / 1e3);
		fflush(stdout);
	}
	bench__destroy(&ring);
	bench__destroy(&bitmap);
}

/* The same dirty pages in 1 to 8 vCPUs' rings. */
static void table_vcpus(uint64_t gib, int rounds)
{
	static const unsigned int vcpus[] = { 1, 2, 4, 8 };
	static const uint64_t counts[] = { 100, 1000 };
	struct bench_vm ring;
	double t, one[2] = { 0, 0 };
	int v, c;

	printf("\n# per-vCPU rings, %lu GiB: harvest + reset of the same dirty pages spread over N vCPUs, us (ratio to 1 vCPU)\n",
	       (unsigned long)gib);
	printf("# %6s %18s %18s\n", "vCPUs", "100 dirty", "1000 dirty");
	for (v = 0; v < 4; v++) {
		bench__create(&ring, true, gib * GIB, vcpus[v]);
		printf("  %6u", vcpus[v]);
		for (c = 0; c < 2; c++) {
			t = bench__median(&ring, counts[c], rounds, NULL);
			if (!v)
				one[c] = t;
			printf(" %10.1f (%4.2f)", t / 1e3, t / one[c]);
		}
		printf("\n");
		fflush(stdout);
		bench__destroy(&ring);
	}
}

int main(int argc, char *argv[])
{
	static const uint64_t sizes[] = { 1, 4, 16 };
	static const uint64_t counts[] = { 10, 100, 1000, 10000, 100000 };
	int rounds = 3, max_gib = 16, opt, s, c;
	uint64_t largest = 1;
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

		bench__create(&ring, true, sizes[s] * GIB, 1);
		bench__create(&bitmap, false, sizes[s] * GIB, 1);
		for (c = 0; c < 5; c++) {
			tr = bench__median(&ring, counts[c], rounds, NULL);
			tb = bench__median(&bitmap, counts[c], rounds, NULL);
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
		largest = sizes[s];
	}
	table_split(largest < 4 ? largest : 4, rounds);
	table_vcpus(largest < 4 ? largest : 4, rounds);
	return 0;

usage:
	fprintf(stderr, "usage: %s [-r rounds (<= %d)] [-s largest GiB (<= %d)]\n",
		argv[0], MAX_ROUNDS, MAX_GIB);
	return 2;
}
