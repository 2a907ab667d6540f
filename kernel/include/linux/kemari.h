/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef __LINUX_KEMARI_H
#define __LINUX_KEMARI_H

#include <linux/errno.h>
#include <linux/types.h>
#include <uapi/linux/kemari.h>

struct kvm;
struct kvm_enable_cap;

/**
 * struct kvm_kemari - per-VM Kemari state
 * @flags: the KVM_KEMARI_* flags userspace passed to KVM_ENABLE_CAP
 *
 * Allocated when userspace enables KVM_CAP_KEMARI and freed with the VM.
 * kvm->kemari is NULL while Kemari is off, so a NULL check is the whole
 * cost of the feature on a VM that does not use it.
 */
struct kvm_kemari {
	u64 flags;
};

#ifdef CONFIG_KVM_KEMARI
int kvm_kemari_check_extension(struct kvm *kvm);
int kvm_kemari_enable_cap(struct kvm *kvm, struct kvm_enable_cap *cap);
void kvm_kemari_destroy_vm(struct kvm *kvm);

/* Arch hook: may @kvm (NULL for /dev/kvm) be replicated at all? */
bool kvm_arch_kemari_supported(struct kvm *kvm);
#else
static inline int kvm_kemari_check_extension(struct kvm *kvm)
{
	return 0;
}

static inline int kvm_kemari_enable_cap(struct kvm *kvm,
					struct kvm_enable_cap *cap)
{
	return -EINVAL;
}

static inline void kvm_kemari_destroy_vm(struct kvm *kvm) {}
#endif /* CONFIG_KVM_KEMARI */

#endif /* __LINUX_KEMARI_H */
