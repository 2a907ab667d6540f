/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Helpers that the Kemari benchmarks share: error exit, clock, median,
 * and the VM set-up they have in common.  Each benchmark sets bench_name
 * before it can fail.
 */
#ifndef KEMARI_BENCH_H
#define KEMARI_BENCH_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>

#include <linux/kvm.h>
#include <linux/kemari.h>

static const char *bench_name = "kemari-bench";

static inline void die(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", bench_name, what, strerror(errno));
	exit(1);
}

static inline double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static inline int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Sorts @v. */
static inline double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A VM, with Kemari on and @kemari_flags in args[0] unless they are 0. */
static inline int bench_vm_create(int kvm_fd, uint64_t kemari_flags)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_KEMARI, .args = { kemari_flags },
	};
	int vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);

	if (vm_fd < 0)
		die("KVM_CREATE_VM");
	if (kemari_flags && ioctl(vm_fd, KVM_ENABLE_CAP, &cap))
		die("KVM_ENABLE_CAP(KVM_CAP_KEMARI)");
	return vm_fd;
}

/* vCPU 0 of @vm_fd in *@vcpu_fd; returns its kvm_run. */
static inline struct kvm_run *bench_vcpu_create_id(int kvm_fd, int vm_fd,
						   unsigned long id,
						   int *vcpu_fd)
{
	struct kvm_run *run;

	*vcpu_fd = ioctl(vm_fd, KVM_CREATE_VCPU, id);
	if (*vcpu_fd < 0)
		die("KVM_CREATE_VCPU");
	run = mmap(NULL, ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0),
		   PROT_READ | PROT_WRITE, MAP_SHARED, *vcpu_fd, 0);
	if (run == MAP_FAILED)
		die("mmap kvm_run");
	return run;
}

static inline struct kvm_run *bench_vcpu_create(int kvm_fd, int vm_fd,
						int *vcpu_fd)
{
	return bench_vcpu_create_id(kvm_fd, vm_fd, 0, vcpu_fd);
}

#define BENCH_MEM_SIZE	0x10000
#define BENCH_CODE_GPA	0x1000

/*
 * Real-mode guest memory at GPA 0 with @code at BENCH_CODE_GPA, and
 * vCPU 0 about to run it; returns its kvm_run.
 */
static inline struct kvm_run *bench_real_mode_vcpu(int kvm_fd, int vm_fd,
						   const void *code,
						   size_t len, int *vcpu_fd)
{
	struct kvm_userspace_memory_region region = {
		.memory_size = BENCH_MEM_SIZE,
	};
	struct kvm_regs regs = { .rip = BENCH_CODE_GPA, .rflags = 0x2 };
	struct kvm_sregs sregs;
	struct kvm_run *run;
	void *mem;

	mem = mmap(NULL, BENCH_MEM_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		die("mmap");
	memcpy((char *)mem + BENCH_CODE_GPA, code, len);
	region.userspace_addr = (uintptr_t)mem;
	if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region))
		die("KVM_SET_USER_MEMORY_REGION");

	run = bench_vcpu_create(kvm_fd, vm_fd, vcpu_fd);
	if (ioctl(*vcpu_fd, KVM_GET_SREGS, &sregs))
		die("KVM_GET_SREGS");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(*vcpu_fd, KVM_SET_SREGS, &sregs) ||
	    ioctl(*vcpu_fd, KVM_SET_REGS, &regs))
		die("KVM_SET_SREGS/REGS");
	return run;
}

/* An ioeventfd on 1-byte writes to PIO @port; returns its eventfd. */
static inline int bench_pio_ioeventfd(int vm_fd, uint16_t port)
{
	struct kvm_ioeventfd io = {
		.addr = port, .len = 1, .flags = KVM_IOEVENTFD_FLAG_PIO,
	};

	io.fd = eventfd(0, EFD_NONBLOCK);
	if (io.fd < 0 || ioctl(vm_fd, KVM_IOEVENTFD, &io))
		die("KVM_IOEVENTFD");
	return io.fd;
}

#endif /* KEMARI_BENCH_H */
