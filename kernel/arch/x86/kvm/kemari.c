// SPDX-License-Identifier: GPL-2.0-only
/*
 * Kemari: the x86 side of event-driven VM replication.
 *
 * See Documentation/virt/kvm/kemari.rst.
 */

#include <kvm/iodev.h>
#include <linux/kemari.h>
#include <linux/kvm_host.h>

#include "i8254.h"
#include "ioapic.h"
#include "irq.h"

/*
 * Only guests whose whole state the VMM can read and write can be
 * checkpointed: SEV and software-protected VMs keep memory and register
 * state that userspace cannot copy to a secondary.
 */
bool kvm_arch_kemari_supported(struct kvm *kvm)
{
	return !kvm || kvm->arch.vm_type == KVM_X86_DEFAULT_VM;
}

/*
 * The in-kernel PIT (with its speaker port), PICs and IOAPIC only change
 * state that KVM_GET_PIT2, KVM_GET_IRQCHIP and the vCPU state capture, so
 * a write to them is not visible outside the VM.
 */
bool kvm_arch_kemari_dev_internal(struct kvm *kvm, struct kvm_io_device *dev)
{
	struct kvm_pit *pit = kvm->arch.vpit;
	struct kvm_pic *pic = kvm->arch.vpic;
	struct kvm_ioapic *ioapic = kvm->arch.vioapic;

	if (pit && (dev == &pit->dev || dev == &pit->speaker_dev))
		return true;
	if (pic && (dev == &pic->dev_master || dev == &pic->dev_slave ||
		    dev == &pic->dev_elcr))
		return true;
	return ioapic && dev == &ioapic->dev;
}

/*
 * A held OUT that no device takes any more becomes the KVM_EXIT_IO it
 * would have been without Kemari.  The instruction has retired already,
 * so there is nothing to complete when userspace re-enters.
 */
void kvm_arch_kemari_pio_exit(struct kvm_vcpu *vcpu, u16 port, int size,
			      const void *data)
{
	struct kvm_run *run = vcpu->run;

	memcpy(vcpu->arch.pio_data, data, size);
	run->exit_reason = KVM_EXIT_IO;
	run->io.direction = KVM_EXIT_IO_OUT;
	run->io.size = size;
	run->io.data_offset = KVM_PIO_PAGE_OFFSET * PAGE_SIZE;
	run->io.count = 1;
	run->io.port = port;
}
