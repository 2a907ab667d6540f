// SPDX-License-Identifier: GPL-2.0-only
/*
 * kemari-tsc-bench: what one guest RDTSC costs with the lazy TSC log,
 * next to a native RDTSC and to a sync point per read.
 *
 * Three VMs, all with Kemari on and an ioeventfd on the guest's port, so
 * that every OUT is a KVM_EXIT_KEMARI_SYNC that the VMM answers with
 * KVM_KEMARI_RESUME and KVM_RUN:
 *
 *   native  no KVM_KEMARI_TSC_LOG: -n RDTSCs, then one OUT.
 *   lazy    KVM_KEMARI_TSC_LOG: the same loop; KVM intercepts every RDTSC
 *           and logs it, and the sync exit after the loop must report
 *           exactly -n reads.
 *   sync    KVM_KEMARI_TSC_LOG, and an OUT after every RDTSC: the
 *           "prohibitive" design that syncs on each read, with a VMM
 *           that does nothing at the sync point.
 *   sync_state  as sync, and the VMM saves the vCPU state that every
 *           checkpoint needs (registers, special registers, IA32_TSC,
 *           the pending write) before it resumes: the least a sync per
 *           read would cost, with no dirty pages and no network.
 *   sync_ckpt   as sync_state, and the VMM sends that state to a
 *           secondary (a child process, over loopback TCP) and waits for
 *           its one-byte acknowledgment before it resumes: what a Kemari
 *           sync point is, with no dirty pages.
 *
 * The variants take turns, -r rounds of -n reads each, all in one boot;
 * the median ns per read is printed with the ratios.  The goal is
 * lazy/sync <= 1/20; a real checkpoint adds dirty pages and a network
 * round trip to sync_state (sync_ckpt adds the round trip), so the true
 * ratio is lower still.  Timings under emulation (TCG) are distorted; the
 * ratios are the result, and the program runs as well on real hardware.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <linux/kemari.h>

#include "bench.h"

#define PORT		0xe0
#define MAX_ROUNDS	64

enum variant { NATIVE, LAZY, SYNC, SYNC_STATE, SYNC_CKPT, NR_VARIANTS };
static const char * const variant_name[] = {
	"native", "lazy", "sync", "sync_state", "sync_ckpt",
};

/* What sync_ckpt sends at each sync point. */
struct ckpt {
	uint32_t len;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry tsc;
	} msrs;
	struct kvm_kemari_pending pending;
};

static int peer_fd = -1;	/* sync_ckpt: the link to the secondary */

struct bench_vm {
	enum variant v;
	int vm_fd, vcpu_fd;
	struct kvm_run *run;
	double ns[MAX_ROUNDS];
};

static int kvm_fd;

/*
 * Real mode; RDTSC clobbers DX, so the port is loaded after it.
 * native, lazy:
 *   1:	mov cx, n
 *   2:	rdtsc
 *	loop 2b
 *	mov dx, PORT
 *	out dx, al
 *	jmp 1b
 * sync:
 *   1:	rdtsc
 *	mov dx, PORT
 *	out dx, al
 *	jmp 1b
 */
static size_t bench__code(enum variant v, uint16_t n, uint8_t *code)
{
	static const uint8_t loop[] = {
		0xb9, 0, 0, 0x0f, 0x31, 0xe2, 0xfc, 0xba, PORT, 0x00,
		0xee, 0xeb, 0xf3,
	};
	static const uint8_t each[] = {
		0x0f, 0x31, 0xba, PORT, 0x00, 0xee, 0xeb, 0xf8,
	};

	if (v >= SYNC) {
		memcpy(code, each, sizeof(each));
		return sizeof(each);
	}
	memcpy(code, loop, sizeof(loop));
	code[1] = n & 0xff;
	code[2] = n >> 8;
	return sizeof(loop);
}

static void bench__create(struct bench_vm *b, enum variant v, uint16_t n)
{
	uint8_t code[16];
	size_t len = bench__code(v, n, code);

	b->v = v;
	b->vm_fd = bench_vm_create(kvm_fd, KVM_KEMARI_ENABLE |
				   (v == NATIVE ? 0 : KVM_KEMARI_TSC_LOG));
	bench_pio_ioeventfd(b->vm_fd, PORT);
	b->run = bench_real_mode_vcpu(kvm_fd, b->vm_fd, code, len, &b->vcpu_fd);
}

static void full_io(int fd, void *buf, size_t len, bool out)
{
	uint8_t *p = buf;
	ssize_t n;

	while (len) {
		n = out ? write(fd, p, len) : read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die(out ? "write to the secondary" : "read from the secondary");
		p += n;
		len -= n;
	}
}

/*
 * The secondary of sync_ckpt: a child process that takes every checkpoint
 * whole and acknowledges it.  Returns the primary's end of the link.
 */
static int bench__secondary(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int lfd, fd, one = 1;
	struct ckpt ck;
	uint8_t ack = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(lfd, 1) || getsockname(lfd, (struct sockaddr *)&sa, &len))
		die("loopback listener");
	if (fork() == 0) {
		fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			_exit(1);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		for (;;) {
			if (read(fd, &ck.len, sizeof(ck.len)) != sizeof(ck.len))
				_exit(0);
			if (ck.len != sizeof(ck))
				_exit(1);
			full_io(fd, (uint8_t *)&ck + sizeof(ck.len),
				sizeof(ck) - sizeof(ck.len), false);
			full_io(fd, &ack, 1, true);
		}
	}
	close(lfd);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("connect to the secondary");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* What a checkpoint saves of a vCPU, at the least; sync_ckpt sends it. */
static void bench__save_vcpu(struct bench_vm *b)
{
	static struct ckpt ck = {
		.len = sizeof(ck),
		.msrs = { .hdr.nmsrs = 1, .tsc.index = 0x10 /* IA32_TSC */ },
	};
	uint8_t ack;

	if (ioctl(b->vcpu_fd, KVM_GET_REGS, &ck.regs) ||
	    ioctl(b->vcpu_fd, KVM_GET_SREGS, &ck.sregs) ||
	    ioctl(b->vcpu_fd, KVM_GET_MSRS, &ck.msrs) != 1 ||
	    ioctl(b->vcpu_fd, KVM_KEMARI_GET_PENDING, &ck.pending))
		die("saving the vCPU state");
	if (b->v != SYNC_CKPT)
		return;
	full_io(peer_fd, &ck, sizeof(ck), true);
	full_io(peer_fd, &ack, 1, false);
}

/* Resume and run to the next sync exit, and check the log it carries. */
static void bench__sync(struct bench_vm *b, uint64_t want_reads)
{
	const struct kvm_kemari_tsc_log *log = &b->run->kemari.tsc;

	if (b->v >= SYNC_STATE)
		bench__save_vcpu(b);
	if (ioctl(b->vm_fd, KVM_KEMARI_RESUME, 0))
		die("KVM_KEMARI_RESUME");
	while (ioctl(b->vcpu_fd, KVM_RUN, 0))
		if (errno != EINTR && errno != EAGAIN)
			die("KVM_RUN");
	if (b->run->exit_reason != KVM_EXIT_KEMARI_SYNC) {
		fprintf(stderr, "%s: %s: exit reason %u, want %u\n", bench_name,
			variant_name[b->v], b->run->exit_reason,
			KVM_EXIT_KEMARI_SYNC);
		exit(1);
	}
	if (log->reads != want_reads) {
		fprintf(stderr, "%s: %s: the log counts %llu reads, want %llu\n",
			bench_name, variant_name[b->v],
			(unsigned long long)log->reads,
			(unsigned long long)want_reads);
		exit(1);
	}
}

/* Time @n guest reads; returns ns per read. */
static double bench__reads(struct bench_vm *b, int n)
{
	double t = now_ns();
	int i;

	if (b->v >= SYNC)
		for (i = 0; i < n; i++)
			bench__sync(b, 1);
	else
		bench__sync(b, b->v == LAZY ? n : 0);
	return (now_ns() - t) / n;
}

int main(int argc, char *argv[])
{
	struct bench_vm vms[NR_VARIANTS];
	int n = 2000, rounds = 21, opt, r, i, v;
	double med[NR_VARIANTS];

	bench_name = "kemari-tsc-bench";
	while ((opt = getopt(argc, argv, "n:r:")) != -1) {
		if (opt == 'n')
			n = atoi(optarg);
		else if (opt == 'r')
			rounds = atoi(optarg);
		else
			goto usage;
	}
	if (n < 1 || n > 65535 || rounds < 1 || rounds > MAX_ROUNDS)
		goto usage;

	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0)
		die("open /dev/kvm");
	if (!(ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_KEMARI) &
	      KVM_KEMARI_TSC_LOG)) {
		fprintf(stderr, "%s: no KVM_KEMARI_TSC_LOG\n", bench_name);
		return 4;
	}

	peer_fd = bench__secondary();

	/* Run each VM to its first sync exit, then warm up. */
	for (v = 0; v < NR_VARIANTS; v++) {
		bench__create(&vms[v], v, n);
		while (ioctl(vms[v].vcpu_fd, KVM_RUN, 0))
			if (errno != EINTR && errno != EAGAIN)
				die("KVM_RUN");
		bench__reads(&vms[v], n);	/* warm up */
	}

	for (r = 0; r < rounds; r++)
		for (v = r % NR_VARIANTS, i = 0; i < NR_VARIANTS;
		     v = (v + 1) % NR_VARIANTS, i++)
			vms[v].ns[r] = bench__reads(&vms[v], n);

	printf("# %d rounds of %d guest RDTSCs per variant, median ns per read\n",
	       rounds, n);
	for (v = 0; v < NR_VARIANTS; v++) {
		med[v] = median(vms[v].ns, rounds);
		printf("%-8s %10.1f ns   ratio to native %.2f\n", variant_name[v],
		       med[v], med[v] / med[NATIVE]);
	}
	printf("lazy/sync ratio: %.4f (goal <= 0.05, i.e. 1/20; here 1/%.1f)\n",
	       med[LAZY] / med[SYNC], med[SYNC] / med[LAZY]);
	printf("lazy/sync_state ratio: %.4f (1/%.1f)\n",
	       med[LAZY] / med[SYNC_STATE], med[SYNC_STATE] / med[LAZY]);
	printf("lazy/sync_ckpt ratio: %.4f (1/%.1f)\n",
	       med[LAZY] / med[SYNC_CKPT], med[SYNC_CKPT] / med[LAZY]);
	close(peer_fd);
	wait(NULL);
	return 0;

usage:
	fprintf(stderr, "usage: %s [-n reads per block (<= 65535)] [-r rounds (<= %d)]\n",
		argv[0], MAX_ROUNDS);
	return 2;
}
