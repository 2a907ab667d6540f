// SPDX-License-Identifier: GPL-2.0-only
/*
 * Kemari: the x86 side of event-driven VM replication.
 *
 * See Documentation/virt/kvm/kemari.rst.
 */

#include <kvm/iodev.h>
#include <linux/kemari.h>
#include <linux/kvm_host.h>

#include "cpuid.h"
#include "i8254.h"
#include "ioapic.h"
#include "irq.h"
#include "kemari.h"
#include "kvm_cache_regs.h"
#include "kvm_emulate.h"
#include "x86.h"

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
 * Xen's EVTCHNOP_send and Hyper-V's HvSignalEvent signal the eventfd that
 * userspace gave the port (KVM_XEN_ATTR_TYPE_EVTCHN) or the connection
 * (KVM_HYPERV_EVENTFD) right from the hypercall: a signal out of the VM
 * that no bus write carries and no sync point precedes.  A Kemari VM has
 * none.  The checks and kvm->kemari's assignment all happen under xen_lock
 * and hv_lock, so whichever of the eventfd and KVM_ENABLE_CAP comes second
 * sees the first and fails with -EBUSY.  Xen ports that deliver to the
 * VM's own vCPUs stay allowed, and without an eventfd for it a hypercall
 * goes to userspace, like any exit.
 */
#ifdef CONFIG_KVM_XEN
bool kvm_kemari_refuse_xen_eventfd(struct kvm *kvm)
{
	lockdep_assert_held(&kvm->arch.xen.xen_lock);
	return READ_ONCE(kvm->kemari);
}

static bool kemari_lock_xen(struct kvm *kvm)
{
	mutex_lock(&kvm->arch.xen.xen_lock);
	return kvm_xen_evtchn_has_eventfd(kvm);
}

static void kemari_unlock_xen(struct kvm *kvm)
{
	mutex_unlock(&kvm->arch.xen.xen_lock);
}
#else
static bool kemari_lock_xen(struct kvm *kvm)
{
	return false;
}

static void kemari_unlock_xen(struct kvm *kvm) {}
#endif

#ifdef CONFIG_KVM_HYPERV
bool kvm_kemari_refuse_hv_eventfd(struct kvm *kvm)
{
	lockdep_assert_held(&kvm->arch.hyperv.hv_lock);
	return READ_ONCE(kvm->kemari);
}

static bool kemari_lock_hv(struct kvm *kvm)
{
	mutex_lock(&kvm->arch.hyperv.hv_lock);
	return !idr_is_empty(&kvm->arch.hyperv.conn_to_evt);
}

static void kemari_unlock_hv(struct kvm *kvm)
{
	mutex_unlock(&kvm->arch.hyperv.hv_lock);
}
#else
static bool kemari_lock_hv(struct kvm *kvm)
{
	return false;
}

static void kemari_unlock_hv(struct kvm *kvm) {}
#endif

int kvm_arch_kemari_install(struct kvm *kvm, struct kvm_kemari *kemari)
{
	bool busy = kemari_lock_xen(kvm);
	int r = 0;

	busy |= kemari_lock_hv(kvm);
	if (busy)
		r = -EBUSY;
	else
		kvm_kemari_publish(kvm, kemari);
	kemari_unlock_hv(kvm);
	kemari_unlock_xen(kvm);
	return r;
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

/*
 * Lazy TSC logging.  With KVM_KEMARI_TSC_LOG, RDTSC and RDTSCP exit to KVM
 * (RDMSR of IA32_TSC does on SVM always and on VMX once the MSR bitmap
 * says so), KVM returns what the guest would have read natively and notes
 * the value in the vCPU's log.  No read stops the VM: the log reaches the
 * VMM with the next KVM_EXIT_KEMARI_SYNC, whatever caused that.
 */
u64 kvm_arch_kemari_flags(void)
{
	return kvm_x86_ops.kemari_tsc_intercept ? KVM_KEMARI_TSC_LOG : 0;
}

/*
 * Log a read at host TSC @host_tsc.  The log is kept in L1's terms, so
 * that the VMM can restore it with a host-initiated write of IA32_TSC
 * even if L2 made the read.
 */
void kvm_kemari_tsc_read(struct kvm_vcpu *vcpu, u64 host_tsc)
{
	struct kvm_kemari_vcpu *kv = vcpu->kemari;
	u64 tsc;

	if (!kv || !kv->tsc_intercepted)
		return;

	tsc = kvm_read_l1_tsc(vcpu, host_tsc);
	kv->tsc.reads++;
	if (tsc > kv->tsc.max)
		kv->tsc.max = tsc;

	/*
	 * With an unstable host TSC, the next vcpu_load() lets the guest's
	 * TSC go on from last_guest_tsc, taken at the VM exit before this
	 * read: make it go on from here, or the guest could read less.
	 */
	if ((s64)(tsc - vcpu->arch.last_guest_tsc) > 0)
		vcpu->arch.last_guest_tsc = tsc;
}
EXPORT_SYMBOL_GPL(kvm_kemari_tsc_read);

/*
 * The guest wrote IA32_TSC or IA32_TSC_ADJUST: from now on it reads values
 * from the new TSC on, which may be below what it read before.
 */
void kvm_kemari_tsc_written(struct kvm_vcpu *vcpu)
{
	struct kvm_kemari_vcpu *kv = vcpu->kemari;

	if (!kv || !kv->tsc_intercepted)
		return;

	kv->tsc.writes++;
	kv->tsc.max = kvm_read_l1_tsc(vcpu, rdtsc());
}

/*
 * The guest's own read of IA32_TSC returns what the guest, L1 or L2, reads
 * natively, and logs it; so does the emulator's RDTSC.
 */
static int kemari_emulate_rdtsc(struct kvm_vcpu *vcpu, bool rdtscp,
				bool cpuid_checked)
{
	u64 tsc, aux = 0;

	if (rdtscp && ((!cpuid_checked &&
			!guest_cpuid_has(vcpu, X86_FEATURE_RDTSCP)) ||
		       kvm_get_msr(vcpu, MSR_TSC_AUX, &aux)))
		return kvm_handle_invalid_op(vcpu);

	if (kvm_get_msr(vcpu, MSR_IA32_TSC, &tsc))
		return kvm_handle_invalid_op(vcpu);

	kvm_rax_write(vcpu, (u32)tsc);
	kvm_rdx_write(vcpu, tsc >> 32);
	if (rdtscp)
		kvm_rcx_write(vcpu, (u32)aux);
	return kvm_skip_emulated_instruction(vcpu);
}

/* The RDTSC exit handler of SVM and VMX. */
int kvm_kemari_handle_rdtsc(struct kvm_vcpu *vcpu)
{
	return kemari_emulate_rdtsc(vcpu, false, false);
}
EXPORT_SYMBOL_GPL(kvm_kemari_handle_rdtsc);

/*
 * The RDTSCP exit handler.  SVM also intercepts RDTSCP to raise #UD when
 * the guest's CPUID lacks it, and so does this.
 */
int kvm_kemari_handle_rdtscp(struct kvm_vcpu *vcpu)
{
	return kemari_emulate_rdtsc(vcpu, true, false);
}
EXPORT_SYMBOL_GPL(kvm_kemari_handle_rdtscp);

/*
 * VMX's RDTSCP exit handler.  RDTSCP exits only while the secondary
 * control "enable RDTSCP" is set, which VMX also sets for a guest that has
 * RDPID without RDTSCP; such a guest runs RDTSCP natively, so it must not
 * get #UD here either.
 */
int kvm_kemari_handle_rdtscp_vmx(struct kvm_vcpu *vcpu)
{
	return kemari_emulate_rdtsc(vcpu, true, true);
}
EXPORT_SYMBOL_GPL(kvm_kemari_handle_rdtscp_vmx);

/*
 * At the start of KVM_RUN: follow the VM's KVM_KEMARI_TSC_LOG flag, which
 * a repeated KVM_ENABLE_CAP may have changed since the last KVM_RUN.
 */
void kvm_arch_kemari_vcpu_enter(struct kvm_vcpu *vcpu)
{
	struct kvm_kemari_vcpu *kv = vcpu->kemari;
	bool on = READ_ONCE(vcpu->kvm->kemari->flags) & KVM_KEMARI_TSC_LOG;

	if (on == kv->tsc_intercepted)
		return;

	/* A log switched on starts afresh. */
	memset(&kv->tsc, 0, sizeof(kv->tsc));
	kv->tsc_intercepted = on;
	kvm_x86_call(kemari_tsc_intercept)(vcpu, on);
}

/*
 * A vCPU reset or a CPUID update rewrote the intercepts, or VMX has just
 * left L2 and can update vmcs01 again: set the TSC intercepts as the log
 * needs them.
 */
void kvm_kemari_tsc_reapply(struct kvm_vcpu *vcpu)
{
	struct kvm_kemari_vcpu *kv = vcpu->kemari;

	if (kv)
		kvm_x86_call(kemari_tsc_intercept)(vcpu, kv->tsc_intercepted);
}
EXPORT_SYMBOL_GPL(kvm_kemari_tsc_reapply);

/*
 * An async page fault leaves a token in guest memory and a completion
 * queued in KVM that no checkpoint can carry, so a secondary resumed from
 * one could wait for ever for a page that is ready.  A Kemari VM does not
 * turn them on: the guest's WRMSR gets #GP, a host-initiated one fails.
 * Writing the MSR with the enable bit clear still works.
 */
bool kvm_kemari_refuse_async_pf(struct kvm_vcpu *vcpu, u64 data)
{
	return READ_ONCE(vcpu->kvm->kemari) && (data & KVM_ASYNC_PF_ENABLED);
}

/*
 * KVM_GET_LAPIC on a Kemari VM: a LAPIC timer that expired while the vCPU
 * was out of KVM_RUN (the VM frozen) waits in lapic_timer.pending, which
 * no checkpoint carries, and would be lost on a secondary that restores
 * the LAPIC.  Deliver it to the IRR first, as KVM_RUN would, so that the
 * state KVM_GET_LAPIC returns holds it; it counts as an injection into
 * the frozen VM.
 */
void kvm_kemari_lapic_sync(struct kvm_vcpu *vcpu)
{
	if (vcpu->kemari && kvm_cpu_has_pending_timer(vcpu))
		kvm_inject_pending_timer_irqs(vcpu);
}

/*
 * Should the emulator return to the run loop instead of going on to the
 * next instruction, or restarting a string instruction for its next
 * element?  It must once a sync is pending: the vCPU's own held write,
 * so that nothing the guest does after it happens before the sync point,
 * or a peer's freeze or the dirty quota, so that the vCPU stops at once.
 * So must the one element of an abandoned string instruction that KVM
 * runs again (kvm_arch_kemari_retry()), before the guest does the rest.
 * Never while PIO data read ahead for a REP INS is still buffered: a new
 * decode would drop it, and the instruction, re-executed, would read the
 * device again.  kvm_kemari_ins_read_ahead() keeps that from happening.
 */
bool kvm_kemari_stop_emulation(struct kvm_vcpu *vcpu)
{
	struct read_cache *rc;

	if (!vcpu->kemari)
		return false;
	if (!vcpu->kemari->passing &&
	    !kvm_test_request(KVM_REQ_KEMARI_SYNC, vcpu))
		return false;

	rc = &vcpu->arch.emulate_ctxt->io_read;
	return rc->pos == rc->end;
}
EXPORT_SYMBOL_GPL(kvm_kemari_stop_emulation);

/*
 * How many elements of a backwards REP INS the emulator may read ahead
 * (@n without Kemari).  Forwards, it stores all it read at once; backwards
 * it takes one per restart, and the next element's store may be a held
 * write, after which the emulator must stop with the rest still buffered.
 * So a Kemari vCPU reads one element at a time.
 */
unsigned int kvm_kemari_ins_read_ahead(struct kvm_vcpu *vcpu, unsigned int n)
{
	return vcpu->kemari ? min(n, 1U) : n;
}

/*
 * Has the vCPU left KVM_RUN with userspace I/O that its next KVM_RUN
 * completes (KVM_EXIT_IO, KVM_EXIT_MMIO, the MSR exits)?  Until then its
 * state is not one to checkpoint.
 */
bool kvm_arch_kemari_io_pending(struct kvm_vcpu *vcpu)
{
	return !!vcpu->arch.complete_userspace_io;
}

/*
 * x86_emulate_instruction() brackets each instruction it emulates (each
 * element of a string instruction): only those can be abandoned, not the
 * emulator's other users (real-mode interrupt injection, task switches),
 * which cannot run again.  @addr and @type are its arguments, kept for
 * running the instruction again as it was run.
 */
void kvm_kemari_emulate_begin(struct kvm_vcpu *vcpu, u64 addr, int type)
{
	struct kvm_kemari_vcpu *kv = vcpu->kemari;

	if (!kv)
		return;
	kv->emulating = !(type & EMULTYPE_NO_DECODE);
	kv->emul_passed = false;
	kv->retry_addr = addr;
	kv->retry_type = type;
}

void kvm_kemari_emulate_end(struct kvm_vcpu *vcpu)
{
	if (vcpu->kemari)
		vcpu->kemari->emulating = false;
}

/*
 * A piece of the emulated instruction goes to a device and cannot join
 * the write that an earlier piece of it made pending: PUSHA, a far CALL
 * or a real-mode INT with the stack in device memory, or a store whose
 * two pages map to GPAs that are not adjacent.  Abandon the instruction:
 * the emulator stops before its register writeback, the guest stays at
 * its start and the checkpoint is taken there; it runs again, whole, at
 * the next KVM_RUN (kvm_arch_kemari_retry()).  Only if running it again
 * repeats nothing that reached outside the vCPU: no piece of it went to
 * userspace or to a device that took it at once (a coalesced zone, an
 * exempt irqchip), and it has read no memory or port yet through the
 * emulator (a read from userspace MMIO or a port would be repeated).
 */
bool kvm_arch_kemari_retry_begin(struct kvm_vcpu *vcpu)
{
	struct x86_emulate_ctxt *ctxt = vcpu->arch.emulate_ctxt;
	struct kvm_kemari_vcpu *kv = vcpu->kemari;

	if (!kv->emulating || kv->emul_passed || vcpu->mmio_needed ||
	    vcpu->mmio_nr_fragments || vcpu->arch.pio.count ||
	    ctxt->io_read.end || ctxt->mem_read.end)
		return false;

	kv->retry_ip = kvm_rip_read(vcpu);
	return true;
}

/* Is the emulator abandoning the instruction (x86.c)? */
bool kvm_kemari_retrying(struct kvm_vcpu *vcpu)
{
	return vcpu->kemari && vcpu->kemari->retry && !vcpu->kemari->passing;
}

/*
 * Run the abandoned instruction again, as it was being run (after a page
 * fault on MMIO, as a rule), unless userspace has moved the vCPU
 * elsewhere (restored other state) since.  One element of a string
 * instruction only: kvm_kemari_stop_emulation() ends it there, and the
 * guest goes on with the next element, whose writes are held again.
 */
int kvm_arch_kemari_retry(struct kvm_vcpu *vcpu)
{
	struct kvm_kemari_vcpu *kv = vcpu->kemari;

	if (kvm_rip_read(vcpu) != kv->retry_ip)
		return 1;
	/* The write protection, if any, was dealt with the first time. */
	return x86_emulate_instruction(vcpu, kv->retry_addr,
				       kv->retry_type & ~EMULTYPE_ALLOW_RETRY_PF,
				       NULL, 0);
}
