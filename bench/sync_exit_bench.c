// SPDX-License-Identifier: GPL-2.0-only
/*
 * kemari-sync-bench: what a KVM_EXIT_KEMARI_SYNC round trip costs next to
 * a plain KVM_EXIT_IO round trip.
 *
 * One guest loop, "out dx, al; jmp back", runs in three VMs:
 *
 *   io         Kemari off, no device on the port: every OUT is a
 *              KVM_EXIT_IO that the VMM answers with KVM_RUN.
 *   io_kemari  the same with Kemari on: what the hooks cost an ordinary exit.
 *   io_efd     as io, and the VMM writes an eventfd for each OUT, as a
 *              userspace device model that kicks a backend would: the
 *              same work for the device as in sync.
 *   sync       Kemari on, an ioeventfd on the port: every OUT is a
 *              KVM_EXIT_KEMARI_SYNC that the VMM answers with
 *              KVM_KEMARI_RESUME and KVM_RUN, which completes the write.
 *
 * The variants take turns in blocks of -n round trips, -r rounds, all in
 * one boot; the median ns per round trip of each is printed, and the
 * ratios to io.  A fourth block times KVM_KEMARI_RESUME alone, the one
 * system call that a sync round trip has and an io round trip has not,
 * so that the ratio without it can be told apart.  Absolute numbers mean little under emulation (TCG); the
 * ratios are the result.  It needs only /dev/kvm and <linux/kemari.h>, so
 * it runs as well on real hardware.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <linux/kemari.h>

#include "bench.h"

#define PORT		0xe0
#define MAX_ROUNDS	64

/* Real mode: mov dx, PORT; 1: out dx, al; jmp 1b */
static const uint8_t guest_code[] = {
	0xba, PORT, 0x00, 0xee, 0xeb, 0xfd,
};

enum variant { IO, IO_KEMARI, IO_EFD, SYNC, NR_VARIANTS };
static const char * const variant_name[] = {
	"io", "io_kemari", "io_efd", "sync",
};

struct bench_vm {
	enum variant v;
	int vm_fd, vcpu_fd, efd;
	struct kvm_run *run;
	double ns[MAX_ROUNDS];
};

static int kvm_fd;

static void bench__create(struct bench_vm *b, enum variant v)
{
	b->v = v;
	b->vm_fd = bench_vm_create(kvm_fd, v == IO ? 0 : KVM_KEMARI_ENABLE);
	if (v == IO_EFD) {
		b->efd = eventfd(0, EFD_NONBLOCK);
		if (b->efd < 0)
			die("eventfd");
	}
	if (v == SYNC)
		b->efd = bench_pio_ioeventfd(b->vm_fd, PORT);
	b->run = bench_real_mode_vcpu(kvm_fd, b->vm_fd, guest_code,
				      sizeof(guest_code), &b->vcpu_fd);
}

/* One round trip: the VMM's answer to the last exit, up to the next one. */
static void bench__round_trip(struct bench_vm *b)
{
	uint32_t want = b->v == SYNC ? KVM_EXIT_KEMARI_SYNC : KVM_EXIT_IO;
	uint64_t one = 1;

	if (b->v == SYNC && ioctl(b->vm_fd, KVM_KEMARI_RESUME, 0) < 0)
		die("KVM_KEMARI_RESUME");
	if (b->v == IO_EFD && write(b->efd, &one, sizeof(one)) != sizeof(one))
		die("write eventfd");
	while (ioctl(b->vcpu_fd, KVM_RUN, 0))
		if (errno != EINTR && errno != EAGAIN)
			die("KVM_RUN");
	if (b->run->exit_reason != want) {
		fprintf(stderr, "kemari-sync-bench: %s: exit reason %u, want %u\n",
			variant_name[b->v], b->run->exit_reason, want);
		exit(1);
	}
}

int main(int argc, char *argv[])
{
	struct bench_vm vms[NR_VARIANTS];
	int n = 500, rounds = 41, opt, r, i, v;
	double t, med[NR_VARIANTS], resume_ns[MAX_ROUNDS], resume;
	uint64_t fired;

	bench_name = "kemari-sync-bench";
	while ((opt = getopt(argc, argv, "n:r:")) != -1) {
		if (opt == 'n')
			n = atoi(optarg);
		else if (opt == 'r')
			rounds = atoi(optarg);
		else
			goto usage;
	}
	if (n < 1 || rounds < 1 || rounds > MAX_ROUNDS)
		goto usage;

	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0)
		die("open /dev/kvm");
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_KEMARI) <= 0) {
		fprintf(stderr, "kemari-sync-bench: no KVM_CAP_KEMARI\n");
		return 4;
	}

	for (v = 0; v < NR_VARIANTS; v++) {
		bench__create(&vms[v], v);
		for (i = 0; i < 100; i++)	/* warm up */
			bench__round_trip(&vms[v]);
	}

	for (r = 0; r < rounds; r++) {
		/* Rotate the order, so that no variant always goes first. */
		for (v = r % NR_VARIANTS, i = 0; i < NR_VARIANTS;
		     v = (v + 1) % NR_VARIANTS, i++) {
			int j;

			t = now_ns();
			for (j = 0; j < n; j++)
				bench__round_trip(&vms[v]);
			vms[v].ns[r] = (now_ns() - t) / n;
		}
		t = now_ns();
		for (i = 0; i < n; i++)
			if (ioctl(vms[SYNC].vm_fd, KVM_KEMARI_RESUME, 0) < 0)
				die("KVM_KEMARI_RESUME");
		resume_ns[r] = (now_ns() - t) / n;
	}

	/* Every sync completed its write: the eventfd fired once per OUT. */
	if (read(vms[SYNC].efd, &fired, sizeof(fired)) != sizeof(fired))
		die("read eventfd");
	printf("# sync: %lu ioeventfd signals for %d round trips\n",
	       (unsigned long)fired, 100 + rounds * n - 1);
	if (fired != (uint64_t)(100 + rounds * n - 1)) {
		fprintf(stderr, "kemari-sync-bench: a write was lost or repeated\n");
		return 1;
	}

	printf("# %d rounds of %d round trips per variant, median ns per round trip\n",
	       rounds, n);
	for (v = 0; v < NR_VARIANTS; v++) {
		med[v] = median(vms[v].ns, rounds);
		printf("%-10s %10.0f ns   ratio to io %.3f\n", variant_name[v],
		       med[v], med[v] / med[IO]);
	}
	resume = median(resume_ns, rounds);
	printf("%-10s %10.0f ns   (KVM_KEMARI_RESUME alone)\n", "resume", resume);
	printf("sync/io ratio: %.3f (goal <= 1.05); without the resume ioctl: %.3f; sync/io_efd: %.3f\n",
	       med[SYNC] / med[IO], (med[SYNC] - resume) / med[IO],
	       med[SYNC] / med[IO_EFD]);
	return 0;

usage:
	fprintf(stderr, "usage: %s [-n round trips per block] [-r rounds (<= %d)]\n",
		argv[0], MAX_ROUNDS);
	return 2;
}
