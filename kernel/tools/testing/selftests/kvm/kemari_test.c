// SPDX-License-Identifier: GPL-2.0-only
/*
 * kemari_test: KVM_CAP_KEMARI, the capability of Kemari event-driven VM
 * replication.  See Documentation/virt/kvm/kemari.rst.
 *
 * Every case checks one documented rule: what KVM_CHECK_EXTENSION
 * reports, that a Kemari VM runs, and that each bad argument or bad
 * ordering of ioctls fails with its own errno and leaves the VM as it was.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

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
static void test_check_extension(void)
{
	struct kvm_vm *vm = vm_create_barebones();
	int sys_mask = kvm_check_cap(KVM_CAP_KEMARI);

	TEST_ASSERT(sys_mask & KVM_KEMARI_ENABLE,
		    "KVM_CAP_KEMARI mask %#x lacks KVM_KEMARI_ENABLE", sys_mask);
	TEST_ASSERT_EQ(vm_check_cap(vm, KVM_CAP_KEMARI), sys_mask);
	kvm_vm_free(vm);
}

/* Kemari enabled before the first vCPU; the guest then runs as usual. */
static void test_enable_and_run(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	vm = vm_create(1);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	vcpu = vm_vcpu_add(vm, 0, guest_code);
	run_guest(vcpu);
	kvm_vm_free(vm);
}

/*
 * Each unknown flag bit, a missing KVM_KEMARI_ENABLE, a reserved argument
 * and a non-zero cap->flags are -EINVAL.  None of them may leave state
 * behind: a valid enable still succeeds afterwards.
 */
static void test_bad_args(void)
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
}

/* A second enable is -EEXIST, and the first one stays in force. */
static void test_enable_twice(void)
{
	struct kvm_vm *vm = vm_create_barebones();

	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	assert_enable_fails(vm, EEXIST, 0, KVM_KEMARI_ENABLE, 0, 0, 0);
	assert_enable_fails(vm, EEXIST, 0, KVM_KEMARI_ENABLE, 0, 0, 0);
	kvm_vm_free(vm);
}

/*
 * Enabling after a vCPU exists is -EBUSY, and the VM goes on running
 * without Kemari.
 */
static void test_enable_after_vcpu(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	assert_enable_fails(vm, EBUSY, 0, KVM_KEMARI_ENABLE, 0, 0, 0);
	run_guest(vcpu);
	kvm_vm_free(vm);
}

/* An argument error is reported before the ordering error. */
static void test_bad_args_after_vcpu(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	assert_enable_fails(vm, EINVAL, 0, 0, 0, 0, 0);
	assert_enable_fails(vm, EINVAL, 0, KVM_KEMARI_ENABLE, 0, 0, 1);
	kvm_vm_free(vm);
}

/* VMs whose state userspace cannot read cannot be replicated. */
static void test_protected_vm(void)
{
	struct kvm_vm *vm;

	if (!(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM))) {
		ksft_test_result_skip("protected_vm: KVM_X86_SW_PROTECTED_VM not supported\n");
		return;
	}

	vm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	TEST_ASSERT_EQ(vm_check_cap(vm, KVM_CAP_KEMARI), 0);
	assert_enable_fails(vm, EOPNOTSUPP, 0, KVM_KEMARI_ENABLE, 0, 0, 0);
	kvm_vm_free(vm);
	ksft_test_result_pass("protected_vm\n");
}

struct kemari_testcase {
	const char *name;
	void (*fn)(void);
	/* The case reports its own result (it may skip). */
	bool reports;
};

static const struct kemari_testcase testcases[] = {
	{ "check_extension", test_check_extension },
	{ "enable_and_run", test_enable_and_run },
	{ "bad_args", test_bad_args },
	{ "enable_twice", test_enable_twice },
	{ "enable_after_vcpu", test_enable_after_vcpu },
	{ "bad_args_after_vcpu", test_bad_args_after_vcpu },
	{ "protected_vm", test_protected_vm, true },
};

int main(int argc, char *argv[])
{
	int i;

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_KEMARI));

	ksft_print_header();
	ksft_set_plan(ARRAY_SIZE(testcases));

	for (i = 0; i < ARRAY_SIZE(testcases); i++) {
		testcases[i].fn();
		if (!testcases[i].reports)
			ksft_test_result_pass("%s\n", testcases[i].name);
	}

	ksft_finished();
}
