// SPDX-License-Identifier: GPL-2.0-only
/*
 * Kemari: event-driven replication of KVM guests for fault tolerance.
 *
 * A Kemari VM is kept identical to a passive secondary by stopping it
 * before every write that could become visible outside the VM, so that
 * the VMM can send a checkpoint and wait for its acknowledgment before
 * the write takes effect.  This file holds the architecture-independent
 * part: the capability and the per-VM state.
 *
 * See Documentation/virt/kvm/kemari.rst.
 */

#include <linux/kemari.h>
#include <linux/kvm_host.h>
#include <linux/slab.h>

/* The args[0] flags this kernel accepts for KVM_ENABLE_CAP(KVM_CAP_KEMARI). */
#define KVM_KEMARI_VALID_FLAGS	KVM_KEMARI_ENABLE

bool __weak kvm_arch_kemari_supported(struct kvm *kvm)
{
	return true;
}

int kvm_kemari_check_extension(struct kvm *kvm)
{
	if (!kvm_arch_kemari_supported(kvm))
		return 0;

	return KVM_KEMARI_VALID_FLAGS;
}

static int kvm_kemari_check_args(struct kvm_enable_cap *cap)
{
	if (cap->flags)
		return -EINVAL;

	if (cap->args[0] & ~KVM_KEMARI_VALID_FLAGS)
		return -EINVAL;

	/* Turning Kemari off again is not supported (yet). */
	if (!(cap->args[0] & KVM_KEMARI_ENABLE))
		return -EINVAL;

	/* args[1..3] are reserved for later use and must be zero. */
	if (cap->args[1] || cap->args[2] || cap->args[3])
		return -EINVAL;

	return 0;
}

int kvm_kemari_enable_cap(struct kvm *kvm, struct kvm_enable_cap *cap)
{
	struct kvm_kemari *kemari;
	int r;

	r = kvm_kemari_check_args(cap);
	if (r)
		return r;

	if (!kvm_arch_kemari_supported(kvm))
		return -EOPNOTSUPP;

	kemari = kzalloc(sizeof(*kemari), GFP_KERNEL_ACCOUNT);
	if (!kemari)
		return -ENOMEM;
	kemari->flags = cap->args[0];

	mutex_lock(&kvm->lock);
	if (kvm->kemari) {
		r = -EEXIST;
	} else if (kvm->created_vcpus) {
		/*
		 * Every vCPU must see Kemari from its first KVM_RUN on, or
		 * the first checkpoint would miss what it did before.
		 */
		r = -EBUSY;
	} else {
		/* Pairs with READ_ONCE() in the readers of kvm->kemari. */
		WRITE_ONCE(kvm->kemari, kemari);
		kemari = NULL;
	}
	mutex_unlock(&kvm->lock);

	kfree(kemari);
	return r;
}

void kvm_kemari_destroy_vm(struct kvm *kvm)
{
	kfree(kvm->kemari);
	kvm->kemari = NULL;
}
