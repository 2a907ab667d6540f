// SPDX-License-Identifier: GPL-2.0-only
/*
 * kemari_test: KVM_CAP_KEMARI, the capability of Kemari event-driven VM
 * replication.  See Documentation/virt/kvm/kemari.rst.
 *
 * Every case checks one documented rule: what KVM_CHECK_EXTENSION
 * reports, that a Kemari VM runs, and that each bad argument or bad
 * ordering of ioctls fails with its own errno and leaves the VM as it was.
 * It also checks that a VMM which keeps marking dirty ring entries as
 * harvested cannot keep KVM_RESET_DIRTY_RINGS in the kernel.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <time.h>

#include <linux/kemari.h>

#include "kvm_util.h"
#include "processor.h"
#include "ucall_common.h"

static int kemari_enable(struct kvm_vm *vm, uint32_t flags, uint64_t a0,
			 uint64_t a1, uint64_t a2, uint64_t a3)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_KEMARI,
		.flags = flags,
		.args = { a0, a1, a2, a3 },
	};

	return __vm_ioctl(vm, KVM_ENABLE_CAP, &cap);
}

static void assert_enable_fails(struct kvm_vm *vm, int err, uint32_t flags,
				uint64_t a0, uint64_t a1, uint64_t a2,
				uint64_t a3)
{
	int r = kemari_enable(vm, flags, a0, a1, a2, a3);

	TEST_ASSERT(r == -1 && errno == err,
		    "KVM_ENABLE_CAP(KEMARI, flags=%#x, args={%#lx, %#lx, %#lx, %#lx}): want errno %d (%s), got r=%d errno=%d (%s)",
		    flags, a0, a1, a2, a3, err, strerror(err), r, errno,
		    strerror(errno));
}

static void guest_code(void)
{
	GUEST_SYNC(1);
	GUEST_SYNC(2);
	GUEST_DONE();
}

/* Run @vcpu to GUEST_DONE, checking each GUEST_SYNC on the way. */
static void run_guest(struct kvm_vcpu *vcpu)
{
	uint64_t want = 1;
	struct ucall uc;

	for (;;) {
		vcpu_run(vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);

		switch (get_ucall(vcpu, &uc)) {
		case UCALL_SYNC:
			TEST_ASSERT_EQ(uc.args[1], want);
			want++;
			break;
		case UCALL_DONE:
			TEST_ASSERT_EQ(want, 3);
			return;
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
			break;
		default:
			TEST_FAIL("Unexpected ucall %lu", uc.cmd);
		}
	}
}

/* The system and the VM report the same, non-empty flag mask. */
static const char *test_check_extension(void)
{
	struct kvm_vm *vm = vm_create_barebones();
	int sys_mask = kvm_check_cap(KVM_CAP_KEMARI);

	TEST_ASSERT(sys_mask & KVM_KEMARI_ENABLE,
		    "KVM_CAP_KEMARI mask %#x lacks KVM_KEMARI_ENABLE", sys_mask);
	TEST_ASSERT_EQ(vm_check_cap(vm, KVM_CAP_KEMARI), sys_mask);
	kvm_vm_free(vm);
	return NULL;
}

/* Kemari enabled before the first vCPU; the guest then runs as usual. */
static const char *test_enable_and_run(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	vm = vm_create(1);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	vcpu = vm_vcpu_add(vm, 0, guest_code);
	run_guest(vcpu);
	kvm_vm_free(vm);
	return NULL;
}

/*
 * Each unknown flag bit, a missing KVM_KEMARI_ENABLE, a reserved argument
 * and a non-zero cap->flags are -EINVAL.  None of them may leave state
 * behind: a valid enable still succeeds afterwards.
 */
static const char *test_bad_args(void)
{
	struct kvm_vm *vm = vm_create_barebones();
	uint64_t valid = kvm_check_cap(KVM_CAP_KEMARI);
	int bit;

	for (bit = 0; bit < 64; bit++) {
		if (valid & (1ull << bit))
			continue;
		assert_enable_fails(vm, EINVAL, 0,
				    KVM_KEMARI_ENABLE | (1ull << bit), 0, 0, 0);
	}
	assert_enable_fails(vm, EINVAL, 0, 0, 0, 0, 0);
	assert_enable_fails(vm, EINVAL, 0, valid & ~KVM_KEMARI_ENABLE, 0, 0, 0);
	assert_enable_fails(vm, EINVAL, 0, KVM_KEMARI_ENABLE, 1, 0, 0);
	assert_enable_fails(vm, EINVAL, 0, KVM_KEMARI_ENABLE, 0, 1, 0);
	assert_enable_fails(vm, EINVAL, 0, KVM_KEMARI_ENABLE, 0, 0, 1);
	assert_enable_fails(vm, EINVAL, 1, KVM_KEMARI_ENABLE, 0, 0, 0);

	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	kvm_vm_free(vm);
	return NULL;
}

/* A second enable is -EEXIST, and the first one stays in force. */
static const char *test_enable_twice(void)
{
	struct kvm_vm *vm = vm_create_barebones();

	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	assert_enable_fails(vm, EEXIST, 0, KVM_KEMARI_ENABLE, 0, 0, 0);
	assert_enable_fails(vm, EEXIST, 0, KVM_KEMARI_ENABLE, 0, 0, 0);
	kvm_vm_free(vm);
	return NULL;
}

/*
 * Enabling after a vCPU exists is -EBUSY, and the VM goes on running
 * without Kemari.
 */
static const char *test_enable_after_vcpu(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	assert_enable_fails(vm, EBUSY, 0, KVM_KEMARI_ENABLE, 0, 0, 0);
	run_guest(vcpu);
	kvm_vm_free(vm);
	return NULL;
}

/* An argument error is reported before the ordering error. */
static const char *test_bad_args_after_vcpu(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	assert_enable_fails(vm, EINVAL, 0, 0, 0, 0, 0);
	assert_enable_fails(vm, EINVAL, 0, KVM_KEMARI_ENABLE, 0, 0, 1);
	kvm_vm_free(vm);
	return NULL;
}

/* VMs whose state userspace cannot read cannot be replicated. */
static const char *test_protected_vm(void)
{
	struct kvm_vm *vm;

	if (!(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM)))
		return "KVM_X86_SW_PROTECTED_VM not supported";

	vm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	TEST_ASSERT_EQ(vm_check_cap(vm, KVM_CAP_KEMARI), 0);
	assert_enable_fails(vm, EOPNOTSUPP, 0, KVM_KEMARI_ENABLE, 0, 0, 0);
	kvm_vm_free(vm);
	return NULL;
}

/* Dirty ring: a VMM that keeps setting RESET cannot wedge the reset. */
#define HOSTILE_RING_ENTRIES	4096
#define HOSTILE_MAX_SECONDS	10

struct hostile_ring {
	struct kvm_dirty_gfn *gfns;
	bool stop;
	bool done;
	uint64_t laps;
};

static bool writer_done(struct hostile_ring *h)
{
	return __atomic_load_n(&h->done, __ATOMIC_ACQUIRE);
}

static void *hostile_ring_writer(void *arg)
{
	struct hostile_ring *h = arg;
	time_t deadline = time(NULL) + HOSTILE_MAX_SECONDS;
	uint32_t i;

	/*
	 * Mark every entry harvested, over and over.  The offsets alternate
	 * 128 pages apart, so that KVM cannot merge the entries into one
	 * mask and has to re-protect each on its own.  Stop after a few
	 * seconds in any case, so that an unfixed kernel returns too.
	 */
	while (!READ_ONCE(h->stop) && time(NULL) < deadline) {
		for (i = 0; i < HOSTILE_RING_ENTRIES; i++) {
			h->gfns[i].slot = 0;
			h->gfns[i].offset = (i & 1) * 128;
			__atomic_store_n(&h->gfns[i].flags,
					 KVM_DIRTY_GFN_F_DIRTY | KVM_DIRTY_GFN_F_RESET,
					 __ATOMIC_RELEASE);
		}
		WRITE_ONCE(h->laps, h->laps + 1);
	}
	__atomic_store_n(&h->done, true, __ATOMIC_RELEASE);
	return NULL;
}

static void alarm_handler(int sig)
{
}

static cpu_set_t all_cpus;

static void pin_all_cpus(void)
{
	pthread_setaffinity_np(pthread_self(), sizeof(all_cpus), &all_cpus);
}

/* Pin @thread to the @nth CPU this task may run on. */
static bool pin_to_nth_cpu(pthread_t thread, int nth)
{
	cpu_set_t one;
	int cpu;

	for (cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &all_cpus) || nth--)
			continue;
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		return !pthread_setaffinity_np(thread, sizeof(one), &one);
	}
	return false;
}

static const char *test_dirty_ring_reset_interruptible(void)
{
	struct itimerval alarm_in = { .it_value.tv_usec = 50 * 1000 };
	struct itimerval disarm = { 0 };
	struct sigaction sa = { .sa_handler = alarm_handler };
	struct hostile_ring h = { 0 };
	sigset_t alrm, old;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint64_t laps;
	pthread_t writer;
	int r, tries = 0;
	bool eintr = false;

	if (!kvm_has_cap(KVM_CAP_DIRTY_LOG_RING))
		return "no KVM_CAP_DIRTY_LOG_RING";
	/* The writer must run while the reset runs, on a CPU of its own. */
	if (!pin_to_nth_cpu(pthread_self(), 0))
		return "cannot pin to a CPU";

	vm = vm_create(1);
	vm_enable_dirty_ring(vm, HOSTILE_RING_ENTRIES * sizeof(struct kvm_dirty_gfn));
	vcpu = vm_vcpu_add(vm, 0, guest_code);
	h.gfns = vcpu_map_dirty_ring(vcpu);

	/* SIGALRM interrupts the resetting thread only; no SA_RESTART. */
	TEST_ASSERT_EQ(sigaction(SIGALRM, &sa, NULL), 0);
	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);
	pthread_sigmask(SIG_BLOCK, &alrm, &old);
	TEST_ASSERT_EQ(pthread_create(&writer, NULL, hostile_ring_writer, &h), 0);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!pin_to_nth_cpu(writer, 1)) {
		WRITE_ONCE(h.stop, true);
		pthread_join(writer, NULL);
		pin_all_cpus();
		kvm_vm_free(vm);
		return "needs two CPUs";
	}

	while (!READ_ONCE(h.laps))
		;

	/*
	 * With the writer running, a reset never runs out of harvested
	 * entries; it must give up when the alarm arrives.  A reset can still
	 * finish first if the writer falls a whole lap behind, hence the
	 * tries, each once the writer has made progress, until the writer
	 * gives up.  A reset that ignores signals never fails with EINTR.
	 */
	while (!eintr && !writer_done(&h)) {
		laps = READ_ONCE(h.laps);
		while (READ_ONCE(h.laps) < laps + 2 && !writer_done(&h))
			;
		tries++;
		setitimer(ITIMER_REAL, &alarm_in, NULL);
		r = __vm_ioctl(vm, KVM_RESET_DIRTY_RINGS, NULL);
		setitimer(ITIMER_REAL, &disarm, NULL);
		if (r < 0)
			TEST_ASSERT(errno == EINTR,
				    "KVM_RESET_DIRTY_RINGS: errno %d, want EINTR",
				    errno);
		eintr = r < 0;
	}
	WRITE_ONCE(h.stop, true);
	pthread_join(writer, NULL);
	signal(SIGALRM, SIG_DFL);
	pin_all_cpus();
	TEST_ASSERT(eintr,
		    "KVM_RESET_DIRTY_RINGS never interrupted in %d tries (%lu laps)",
		    tries, h.laps);

	/* The ring still works: what is left is reset now. */
	r = __vm_ioctl(vm, KVM_RESET_DIRTY_RINGS, NULL);
	TEST_ASSERT(r >= 0 && r <= HOSTILE_RING_ENTRIES,
		    "KVM_RESET_DIRTY_RINGS after the writer stopped: r=%d errno=%d", r, errno);
	TEST_ASSERT_EQ(__vm_ioctl(vm, KVM_RESET_DIRTY_RINGS, NULL), 0);

	kvm_vm_free(vm);
	return NULL;
}

struct kemari_testcase {
	const char *name;
	/* Returns NULL if the case passed, or why it was skipped. */
	const char *(*fn)(void);
};

static const struct kemari_testcase testcases[] = {
	{ "check_extension", test_check_extension },
	{ "enable_and_run", test_enable_and_run },
	{ "bad_args", test_bad_args },
	{ "enable_twice", test_enable_twice },
	{ "enable_after_vcpu", test_enable_after_vcpu },
	{ "bad_args_after_vcpu", test_bad_args_after_vcpu },
	{ "protected_vm", test_protected_vm },
	{ "dirty_ring_reset_interruptible", test_dirty_ring_reset_interruptible },
};

int main(int argc, char *argv[])
{
	const char *skip;
	int i;

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_KEMARI));
	TEST_ASSERT_EQ(sched_getaffinity(0, sizeof(all_cpus), &all_cpus), 0);

	ksft_print_header();
	ksft_set_plan(ARRAY_SIZE(testcases));

	for (i = 0; i < ARRAY_SIZE(testcases); i++) {
		skip = testcases[i].fn();
		if (skip)
			ksft_test_result_skip("%s: %s\n", testcases[i].name, skip);
		else
			ksft_test_result_pass("%s\n", testcases[i].name);
	}

	ksft_finished();
}
