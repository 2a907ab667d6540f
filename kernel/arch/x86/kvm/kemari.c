// SPDX-License-Identifier: GPL-2.0-only
/*
 * Kemari: the x86 side of event-driven VM replication.
 *
 * See Documentation/virt/kvm/kemari.rst.
 */

#include <linux/kemari.h>
#include <linux/kvm_host.h>

/*
 * Only guests whose whole state the VMM can read and write can be
 * checkpointed: SEV and software-protected VMs keep memory and register
 * state that userspace cannot copy to a secondary.
 */
bool kvm_arch_kemari_supported(struct kvm *kvm)
{
	return !kvm || kvm->arch.vm_type == KVM_X86_DEFAULT_VM;
}
