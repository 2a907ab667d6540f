// SPDX-License-Identifier: GPL-2.0-only
/*
 * Kemari: event-driven replication of KVM guests for fault tolerance.
 *
 * A Kemari VM is kept identical to a passive secondary by stopping it
 * before every write that could become visible outside the VM, so that
 * the VMM can send a checkpoint and wait for its acknowledgment before
 * the write takes effect.  This file holds the architecture-independent
 * part: the capability, the sync points on the I/O buses and the
 * coalesced MMIO ring, the whole-VM freeze and the pending write.
 *
 * The life of a held write:
 *
 *   guest writes --hold--> pending, VM frozen --KVM_EXIT_KEMARI_SYNC-->
 *   VMM checkpoints --KVM_KEMARI_RESUME, KVM_RUN--> write reaches device
 *
 * The instruction that made the write has retired when the vCPU stops:
 * KVM tells the emulator that a device took the write and keeps it here
 * instead.  So the registers a checkpoint captures are already past the
 * instruction, and the pending write is self-contained state that the
 * VMM saves and restores with KVM_KEMARI_GET/SET_PENDING.
 *
 * See Documentation/virt/kvm/kemari.rst.
 */

#include <kvm/iodev.h>
#include <linux/kemari.h>
#include <linux/kvm_host.h>
#include <linux/moduleparam.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "coalesced_mmio.h"

#define CREATE_TRACE_POINTS
#include <trace/events/kemari.h>

/*
 * The args[0] flags every architecture accepts for
 * KVM_ENABLE_CAP(KVM_CAP_KEMARI); kvm_arch_kemari_flags() adds its own.
 */
#define KVM_KEMARI_GENERIC_FLAGS (KVM_KEMARI_ENABLE | KVM_KEMARI_EXEMPT_IRQCHIP)

/* The flags that a repeated KVM_ENABLE_CAP may change. */
#define KVM_KEMARI_MUTABLE_FLAGS KVM_KEMARI_TSC_LOG

/*
 * An architecture opts in by implementing this and by calling the
 * kvm_kemari_vcpu_run*() hooks from its KVM_RUN; without them a held
 * write would never complete.
 */
bool __weak kvm_arch_kemari_supported(struct kvm *kvm)
{
	return false;
}

/* Devices whose state the checkpoint captures need no sync of their own. */
bool __weak kvm_arch_kemari_dev_internal(struct kvm *kvm,
					 struct kvm_io_device *dev)
{
	return false;
}

/* Only architectures with a PIO bus hold PIO writes. */
void __weak kvm_arch_kemari_pio_exit(struct kvm_vcpu *vcpu, u16 port,
				     int size, const void *data)
{
}

/* Flags for features of the architecture, such as KVM_KEMARI_TSC_LOG. */
u64 __weak kvm_arch_kemari_flags(void)
{
	return 0;
}

/* Called at the start of every KVM_RUN of a Kemari vCPU. */
void __weak kvm_arch_kemari_vcpu_enter(struct kvm_vcpu *vcpu)
{
}

/* Has the vCPU left userspace I/O that its next KVM_RUN completes? */
bool __weak kvm_arch_kemari_retry_begin(struct kvm_vcpu *vcpu)
{
	return false;
}

int __weak kvm_arch_kemari_retry(struct kvm_vcpu *vcpu)
{
	return 1;
}

bool __weak kvm_arch_kemari_io_pending(struct kvm_vcpu *vcpu)
{
	return false;
}

static u64 kemari_valid_flags(void)
{
	return KVM_KEMARI_GENERIC_FLAGS | kvm_arch_kemari_flags();
}

int kvm_kemari_check_extension(struct kvm *kvm)
{
	if (!kvm_arch_kemari_supported(kvm))
		return 0;

	return kemari_valid_flags();
}

static int kvm_kemari_check_args(struct kvm_enable_cap *cap)
{
	if (cap->flags)
		return -EINVAL;

	if (cap->args[0] & ~kemari_valid_flags())
		return -EINVAL;

	/* Turning Kemari off again is not supported (yet). */
	if (!(cap->args[0] & KVM_KEMARI_ENABLE))
		return -EINVAL;

	/* args[2..3] are reserved for later use and must be zero. */
	if (cap->args[2] || cap->args[3])
		return -EINVAL;

	return 0;
}

/*
 * A dirty quota counts dirty ring entries, and one above the ring's soft
 * limit would never fire (at the soft limit the full ring stops the vCPU
 * anyway): it needs a dirty ring, enabled first, and a quota at most its
 * soft limit.  The ring's size cannot change once it is set.
 */
static bool kemari_quota_fits(struct kvm *kvm, u64 quota)
{
	u32 entries = kvm->dirty_ring_size / sizeof(struct kvm_dirty_gfn);

	return !quota || (entries && quota <= entries -
			  kvm_dirty_ring_get_rsvd_entries());
}

/*
 * A resampling irqfd signals its resample eventfd when the guest EOIs the
 * interrupt, through the PIC, the IOAPIC or the LAPIC: a signal out of the
 * VM that no bus write carries and no sync point precedes.  A Kemari VM
 * has none.  Its check and kvm->kemari's assignment both happen under
 * resampler_lock, so whichever of KVM_IRQFD and KVM_ENABLE_CAP comes
 * second sees the first and fails with -EBUSY.
 */
#ifdef CONFIG_HAVE_KVM_IRQCHIP
bool kvm_kemari_refuse_resampler(struct kvm *kvm)
{
	lockdep_assert_held(&kvm->irqfds.resampler_lock);
	return READ_ONCE(kvm->kemari);
}

static bool kemari_has_resamplers(struct kvm *kvm)
{
	lockdep_assert_held(&kvm->irqfds.resampler_lock);
	return !list_empty(&kvm->irqfds.resampler_list);
}
#endif

/*
 * A repeated KVM_ENABLE_CAP may switch the mutable flags and must leave
 * everything else as it is.  Each vCPU follows at its next KVM_RUN.
 */
static int kemari_change(struct kvm_kemari *kemari, struct kvm_enable_cap *cap)
{
	if (((kemari->flags ^ cap->args[0]) & ~KVM_KEMARI_MUTABLE_FLAGS) ||
	    kemari->dirty_quota != cap->args[1])
		return -EEXIST;

	WRITE_ONCE(kemari->flags, cap->args[0]);
	return 0;
}

/* From here on the VM is a Kemari VM; called with the arch's locks held. */
void kvm_kemari_publish(struct kvm *kvm, struct kvm_kemari *kemari)
{
	/* Pairs with READ_ONCE() in the readers of kvm->kemari. */
	WRITE_ONCE(kvm->kemari, kemari);
}

/*
 * The arch refuses Kemari with -EBUSY while the VM has something that
 * signals out of it past the buses, and takes the locks that keep such a
 * thing from appearing while it publishes @kemari.
 */
int __weak kvm_arch_kemari_install(struct kvm *kvm, struct kvm_kemari *kemari)
{
	kvm_kemari_publish(kvm, kemari);
	return 0;
}

/*
 * Turn Kemari on, unless an irqfd resamples (kvm_kemari_refuse_resampler())
 * or the arch refuses.  Lock order: kvm->lock, resampler_lock, the arch's.
 */
#ifdef CONFIG_HAVE_KVM_IRQCHIP
static int kemari_install(struct kvm *kvm, struct kvm_kemari *kemari)
{
	int r = -EBUSY;

	mutex_lock(&kvm->irqfds.resampler_lock);
	if (!kemari_has_resamplers(kvm))
		r = kvm_arch_kemari_install(kvm, kemari);
	mutex_unlock(&kvm->irqfds.resampler_lock);
	return r;
}
#else
static int kemari_install(struct kvm *kvm, struct kvm_kemari *kemari)
{
	return kvm_arch_kemari_install(kvm, kemari);
}
#endif

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
	kemari->dirty_quota = cap->args[1];

	mutex_lock(&kvm->lock);
	if (kvm->kemari) {
		r = kemari_change(kvm->kemari, cap);
	} else if (!kemari_quota_fits(kvm, cap->args[1])) {
		r = -EINVAL;
	} else if (kvm->created_vcpus) {
		/*
		 * Every vCPU must see Kemari from its first KVM_RUN on, or
		 * the first checkpoint would miss what it did before.
		 */
		r = -EBUSY;
	} else {
		r = kemari_install(kvm, kemari);
		if (!r)
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

/*
 * For tests of a VMM's freeze watchdog: the index plus one of a vCPU whose
 * kick the next freeze leaves out, as if it had been lost.  0: none.
 */
static unsigned int kemari_drop_kick;
module_param(kemari_drop_kick, uint, 0644);
MODULE_PARM_DESC(kemari_drop_kick,
		 "Kemari testing: leave out the next freeze's kick of vCPU index N-1 (0: off)");

static bool kemari_frozen(struct kvm *kvm)
{
	return atomic_read(&kvm->kemari->freeze) & 1;
}

/* The number of the freeze that kvm_kemari.freeze @f belongs to. */
static u32 kemari_generation(int f)
{
	return ((u32)f + 1) / 2;
}

/*
 * Start a freeze for a consistent cut of the VM, and stop every vCPU but
 * @self (NULL for KVM_KEMARI_FREEZE).  A vCPU in guest mode is kicked out;
 * a halted or blocked one is woken by KVM_REQ_UNBLOCK and reports in
 * without running guest code; one outside KVM_RUN finds the VM frozen when
 * it next enters.  Returns false if the VM was frozen already.
 */
static bool kemari_freeze(struct kvm *kvm, struct kvm_vcpu *self, u32 reason)
{
	int f = atomic_read(&kvm->kemari->freeze);
	unsigned int drop = 0;
	struct kvm_vcpu *peer;
	unsigned long i;

	do {
		if (f & 1)
			return false;
	} while (!atomic_try_cmpxchg(&kvm->kemari->freeze, &f, f + 1));

	trace_kemari_freeze(self ? self->vcpu_id : -1,
			    kemari_generation(f + 1), reason);

	if (unlikely(READ_ONCE(kemari_drop_kick)))
		drop = xchg(&kemari_drop_kick, 0);

	kvm_for_each_vcpu(i, peer, kvm) {
		if (peer == self || i + 1 == drop)
			continue;
		kvm_make_request(KVM_REQ_KEMARI_SYNC, peer);
		kvm_make_request(KVM_REQ_UNBLOCK, peer);
		kvm_vcpu_kick(peer);
	}
	return true;
}

static u32 kemari_write_bytes(const struct kvm_kemari_write *w)
{
	switch (w->bus) {
	case KVM_KEMARI_BUS_PIO:
		return w->len * w->count;
	case KVM_KEMARI_BUS_MMIO:
		return w->count ? w->len : 0;
	default:
		return 0;
	}
}

static void kemari_count(struct kvm_vcpu *vcpu, u32 reason)
{
	if (reason & KVM_KEMARI_SYNC_IO_BUS)
		++vcpu->stat.generic.kemari_sync_io_bus;
	if (reason & KVM_KEMARI_SYNC_COALESCED)
		++vcpu->stat.generic.kemari_sync_coalesced;
	if (reason & KVM_KEMARI_SYNC_PEER)
		++vcpu->stat.generic.kemari_sync_peer;
	if (reason & KVM_KEMARI_SYNC_DIRTY_QUOTA)
		++vcpu->stat.generic.kemari_sync_dirty_quota;
}

/* Entries pushed to the vCPU's dirty ring and not reset yet. */
static u32 kemari_dirty_entries(struct kvm_vcpu *vcpu)
{
#ifdef CONFIG_HAVE_KVM_DIRTY_RING
	return READ_ONCE(vcpu->dirty_ring.dirty_index) -
	       READ_ONCE(vcpu->dirty_ring.reset_index);
#else
	return 0;
#endif
}

/*
 * Fill in KVM_EXIT_KEMARI_SYNC.  A pending write and a dirty quota reached
 * since the last sync exit always count as reasons.
 */
static void kemari_exit(struct kvm_vcpu *vcpu, u32 reason)
{
	struct kvm_kemari_vcpu *kv = vcpu->kemari;
	int f = atomic_read(&vcpu->kvm->kemari->freeze);
	struct kvm_run *run = vcpu->run;
	u32 bytes = kemari_write_bytes(&kv->write);

	kvm_clear_request(KVM_REQ_KEMARI_SYNC, vcpu);
	/*
	 * Clear the request before the quota bit: a push that sets both
	 * after this point is then reported by the next sync exit.
	 */
	smp_mb__after_atomic();
	if (kv->write.count || kv->retry)
		reason |= KVM_KEMARI_SYNC_IO_BUS;
	if (test_and_clear_bit(KVM_KEMARI_VCPU_QUOTA, &kv->atomic_flags))
		reason |= KVM_KEMARI_SYNC_DIRTY_QUOTA;

	run->exit_reason = KVM_EXIT_KEMARI_SYNC;
	memset(&run->kemari, 0, sizeof(run->kemari));
	run->kemari.reason = reason;
	run->kemari.generation = (f & 1) ? kemari_generation(f) : 0;
	/* The vCPU has reported the freeze, with no I/O left unfinished. */
	if (f & 1)
		WRITE_ONCE(kv->stopped, f);
	run->kemari.dirty_entries = kemari_dirty_entries(vcpu);
	run->kemari.write = kv->write;
	memcpy(run->kemari.data, kv->data, min(bytes, KVM_KEMARI_INLINE_DATA));
	if (bytes > KVM_KEMARI_INLINE_DATA)
		run->kemari.flags |= KVM_KEMARI_EXIT_DATA_TRUNCATED;
	if (kv->tsc_intercepted) {
		run->kemari.tsc = kv->tsc;
		run->kemari.tsc.flags = KVM_KEMARI_TSC_LOG_ON;
		kv->tsc.reads = 0;
		kv->tsc.writes = 0;
	}

	kemari_count(vcpu, reason);
	trace_kemari_sync(vcpu->vcpu_id, reason, &kv->write);
}

/*
 * KVM_RUN while the VM is frozen: no guest code runs and nothing pending
 * completes.  immediate_exit keeps its meaning, -EINTR; otherwise the
 * vCPU reports the freeze again.
 */
static int kemari_stay_frozen(struct kvm_vcpu *vcpu, u32 reason)
{
	if (!vcpu->wants_to_run) {
		/* Its I/O is complete: as good as a report of the freeze. */
		WRITE_ONCE(vcpu->kemari->stopped,
			   atomic_read(&vcpu->kvm->kemari->freeze));
		return -EINTR;
	}

	kemari_exit(vcpu, reason | KVM_KEMARI_SYNC_PEER);
	return 0;
}

/* kvm_io_bus_cmp() == 0, spelled out: may @dev take the write @w? */
static bool kemari_range_hit(const struct kvm_io_range *dev,
			     const struct kvm_io_range *w)
{
	if (w->addr < dev->addr)
		return false;
	if (!dev->len)
		return w->addr == dev->addr;
	return w->addr + w->len <= dev->addr + dev->len;
}

/*
 * Does any device that may take the write have effects outside the VM?
 * The coalesced MMIO ring is an output buffer that is synced when it is
 * flushed, and with KVM_KEMARI_EXEMPT_IRQCHIP the VM's own interrupt
 * controllers and timer are left to the checkpoint.
 */
static bool kemari_needs_sync(struct kvm *kvm, struct kvm_io_bus *bus,
			      int i, const struct kvm_io_range *range)
{
	bool exempt = READ_ONCE(kvm->kemari->flags) & KVM_KEMARI_EXEMPT_IRQCHIP;
	struct kvm_io_device *dev;

	for (; i < bus->dev_count && kemari_range_hit(&bus->range[i], range);
	     i++) {
		dev = bus->range[i].dev;
		if (kvm_io_dev_is_coalesced_mmio(dev)) {
			if (!atomic_read(&kvm->kemari->coalesced_written))
				atomic_set(&kvm->kemari->coalesced_written, 1);
			continue;
		}
		if (exempt && kvm_arch_kemari_dev_internal(kvm, dev))
			continue;
		return true;
	}
	return false;
}

/*
 * Add a bus write to the pending write.  One access can make several: a
 * wide or page-crossing MMIO store makes one per 8-byte piece, at
 * consecutive addresses, which are merged.  A string instruction makes one
 * per element, but the emulator stops after the first element that is
 * held (kvm_kemari_stop_emulation()), so each element is a sync point.
 */
static bool kemari_queue(struct kvm_kemari_vcpu *kv, int bus_idx,
			 const struct kvm_io_range *range, const void *val)
{
	struct kvm_kemari_write *w = &kv->write;
	u32 bus = bus_idx == KVM_PIO_BUS ? KVM_KEMARI_BUS_PIO :
					   KVM_KEMARI_BUS_MMIO;
	u32 len = range->len;

	if (!w->count) {
		if (len > KVM_KEMARI_MAX_DATA)
			return false;
		*w = (struct kvm_kemari_write) {
			.bus = bus,
			.len = len,
			.addr = range->addr,
			.count = 1,
		};
		memcpy(kv->data, val, len);
		return true;
	}

	if (bus == KVM_KEMARI_BUS_MMIO && w->bus == bus &&
	    range->addr == w->addr + w->len &&
	    w->len + len <= KVM_KEMARI_MAX_DATA) {
		memcpy(kv->data + w->len, val, len);
		w->len += len;
		return true;
	}

	return false;
}

/*
 * Called by kvm_io_bus_write() for a write that @first_dev and the devices
 * after it may take.  Returns 1 if the write is held: the caller then
 * treats it as done, and the device sees it on the next KVM_RUN.  Returns
 * 0 to let the write go on as usual, or -EOPNOTSUPP to make the caller
 * treat it as taken by no device.
 */
int kvm_kemari_hold_write(struct kvm_vcpu *vcpu, int bus_idx,
			  struct kvm_io_bus *bus, int first_dev,
			  const struct kvm_io_range *range, const void *val)
{
	struct kvm_kemari_vcpu *kv = vcpu->kemari;

	if (first_dev < 0 || kv->completing || kv->passing)
		return 0;

	if (bus_idx != KVM_MMIO_BUS && bus_idx != KVM_PIO_BUS &&
	    bus_idx != KVM_FAST_MMIO_BUS)
		return 0;

	/* The rest of an instruction that is being abandoned: dropped. */
	if (kv->retry)
		return 1;

	if (!kemari_needs_sync(vcpu->kvm, bus, first_dev, range)) {
		/* Taken now: running the instruction again would repeat it. */
		kv->emul_passed = true;
		return 0;
	}

	/*
	 * A fast MMIO write (VMX: EPT misconfig) carries no data.  Send it
	 * down the slow path: KVM emulates the instruction, and the write
	 * reaches the MMIO bus, where every length-0 ioeventfd also sits,
	 * with its data.  That one is held, and is the KVM_EXIT_MMIO it would
	 * have been if the ioeventfd is gone when it completes.
	 */
	if (bus_idx == KVM_FAST_MMIO_BUS)
		return -EOPNOTSUPP;

	if (!kemari_queue(kv, bus_idx, range, val)) {
		/*
		 * A piece of the same instruction as the held write that
		 * cannot join it: the arch abandons the instruction, if it
		 * can, and re-executes it after the sync point.  The held
		 * piece is dropped; the re-execution writes it again.
		 */
		if (bus_idx == KVM_MMIO_BUS && kv->write.count &&
		    kvm_arch_kemari_retry_begin(vcpu)) {
			trace_kemari_retry(vcpu->vcpu_id, &kv->write,
					   range->addr);
			memset(&kv->write, 0, sizeof(kv->write));
			kv->retry = true;
			return 1;
		}
		/* See kemari.rst, Limitations: counted, not held. */
		++vcpu->stat.generic.kemari_writes_unsynced;
		return 0;
	}

	++vcpu->stat.generic.kemari_writes_held;
	kemari_freeze(vcpu->kvm, vcpu, KVM_KEMARI_SYNC_IO_BUS);
	kvm_make_request(KVM_REQ_KEMARI_SYNC, vcpu);
	return 1;
}


static void kemari_mmio_exit(struct kvm_vcpu *vcpu, gpa_t addr, int len,
			     const void *data)
{
	struct kvm_run *run = vcpu->run;

	run->exit_reason = KVM_EXIT_MMIO;
	run->mmio.phys_addr = addr;
	run->mmio.len = len;
	run->mmio.is_write = 1;
	memset(run->mmio.data, 0, sizeof(run->mmio.data));
	memcpy(run->mmio.data, data, len);
}

/*
 * Hand the pending write to the devices, element by element or 8-byte
 * piece by piece as the instruction would have.  A piece that no device
 * takes any more (an ioeventfd whose datamatch differs, a device removed
 * while the VM was stopped) goes to userspace as the KVM_EXIT_IO or
 * KVM_EXIT_MMIO it would have been without Kemari, and the rest waits
 * for the KVM_RUN after that.  Returns 1 to enter the guest, 0 to exit.
 */
static int kemari_complete(struct kvm_vcpu *vcpu)
{
	struct kvm_kemari_vcpu *kv = vcpu->kemari;
	struct kvm_kemari_write *w = &kv->write;
	struct kvm_kemari_write start = *w;
	u32 done = 0, n = 0, unclaimed = 0;

	kv->completing = true;
	switch (w->bus) {
	case KVM_KEMARI_BUS_PIO:
		while (w->count && !unclaimed) {
			n = w->len;
			if (kvm_io_bus_write(vcpu, KVM_PIO_BUS, w->addr, n,
					     kv->data + done)) {
				kvm_arch_kemari_pio_exit(vcpu, w->addr, n,
							 kv->data + done);
				unclaimed = 1;
			}
			done += n;
			w->count--;
		}
		break;
	case KVM_KEMARI_BUS_MMIO:
		while (w->len && !unclaimed) {
			n = min3(w->len, 8U,
				 (u32)(PAGE_SIZE - offset_in_page(w->addr)));
			if (kvm_io_bus_write(vcpu, KVM_MMIO_BUS, w->addr, n,
					     kv->data + done)) {
				kemari_mmio_exit(vcpu, w->addr, n,
						 kv->data + done);
				unclaimed = 1;
			}
			done += n;
			w->addr += n;
			w->len -= n;
		}
		if (!w->len)
			w->count = 0;
		break;
	}
	kv->completing = false;

	if (w->count) {
		memmove(kv->data, kv->data + done, kemari_write_bytes(w));
	} else {
		memset(w, 0, sizeof(*w));
		++vcpu->stat.generic.kemari_writes_completed;
	}

	trace_kemari_complete(vcpu->vcpu_id, &start, unclaimed);
	return !unclaimed;
}

/*
 * Re-execute the instruction that was abandoned at the sync point, before
 * the guest runs, with its device writes let through: the checkpoint the
 * VMM took at that sync point is from before the instruction.  Returns 1
 * to enter the guest, 0 to exit (the instruction's own userspace I/O).
 */
static int kemari_retry(struct kvm_vcpu *vcpu)
{
	struct kvm_kemari_vcpu *kv = vcpu->kemari;
	int r;

	kv->retry = false;
	kv->passing = true;
	r = kvm_arch_kemari_retry(vcpu);
	kv->passing = false;
	return r;
}

static struct kvm_kemari_vcpu *kemari_vcpu_state(struct kvm_vcpu *vcpu)
{
	struct kvm_kemari_vcpu *kv;

	if (vcpu->kemari)
		return vcpu->kemari;

	kv = kzalloc(sizeof(*kv), GFP_KERNEL_ACCOUNT);
	if (!kv)
		return NULL;
	/* KVM_KEMARI_RESUME and GET_FREEZE read it from other tasks. */
	smp_store_release(&vcpu->kemari, kv);
	return kv;
}

#ifdef CONFIG_KVM_MMIO
/*
 * Has the guest written to a coalesced MMIO zone since the last coalesced
 * flush sync, and does the ring hold entries that userspace may process on
 * this exit?  A write still in flight on another vCPU when this clears
 * the flag is covered too: the sync freezes that vCPU, and the VMM
 * processes the ring only once all vCPUs have stopped.
 */
static bool kemari_coalesced_unsynced(struct kvm *kvm)
{
	struct kvm_coalesced_mmio_ring *ring = kvm->coalesced_mmio_ring;

	if (!ring || !atomic_read(&kvm->kemari->coalesced_written) ||
	    READ_ONCE(ring->first) == READ_ONCE(ring->last))
		return false;

	return atomic_xchg(&kvm->kemari->coalesced_written, 0);
}
#else
static bool kemari_coalesced_unsynced(struct kvm *kvm)
{
	return false;
}
#endif

/*
 * KVM_RUN, before the arch's part: set up the vCPU's state and note that
 * the vCPU is in KVM_RUN, before it can look at the freeze.  Returns 0 to
 * go on, -errno to fail KVM_RUN.
 */
int kvm_kemari_vcpu_run_enter(struct kvm_vcpu *vcpu)
{
	struct kvm_kemari_vcpu *kv;

	if (!READ_ONCE(vcpu->kvm->kemari))
		return 0;

	kv = kemari_vcpu_state(vcpu);
	if (!kv)
		return -ENOMEM;

	WRITE_ONCE(kv->in_run, true);
	/* Pairs with the full barrier of a freeze's cmpxchg, see resume. */
	smp_mb();
	return 0;
}

/*
 * KVM_RUN, after the arch's part, once nothing can push to the dirty ring
 * any more (the vCPU is put, so kvm_sched_out() no longer writes steal
 * time): count the entries for the sync exit, and note that the vCPU has
 * left KVM_RUN.
 */
void kvm_kemari_vcpu_run_leave(struct kvm_vcpu *vcpu)
{
	struct kvm_kemari_vcpu *kv = vcpu->kemari;

	if (!kv)
		return;

	if (vcpu->run->exit_reason == KVM_EXIT_KEMARI_SYNC)
		vcpu->run->kemari.dirty_entries = kemari_dirty_entries(vcpu);
	/* After the arch has set kvm_run->flags for this exit. */
	if (kv->sync_flag) {
		vcpu->run->flags |= KVM_RUN_KEMARI_SYNC;
		kv->sync_flag = false;
	}

	/* Pairs with kemari_vcpu_running(). */
	smp_store_release(&kv->in_run, false);
}

/*
 * KVM_RUN of a vCPU that waits for INIT or SIPI: it must not block in the
 * kernel while the VM is frozen, or the freeze would never complete.
 * Returns 1 to go on and block, 0 or -errno to return to userspace.
 */
int kvm_kemari_vcpu_run_uninit(struct kvm_vcpu *vcpu)
{
	if (!vcpu->kemari || !kemari_frozen(vcpu->kvm))
		return 1;

	return kemari_stay_frozen(vcpu, 0);
}

/*
 * First of the KVM_RUN hooks, before the arch completes userspace I/O: set
 * up the vCPU's state for this run.
 */
void kvm_kemari_vcpu_run_begin(struct kvm_vcpu *vcpu)
{
	if (vcpu->kemari)
		kvm_arch_kemari_vcpu_enter(vcpu);
}

/*
 * After the arch has completed userspace I/O: stay out of the guest while
 * the VM is frozen, else complete the pending write before the guest runs.
 * The write completes even with immediate_exit set, so that a VMM can
 * complete it without running guest code.
 */
int kvm_kemari_vcpu_run(struct kvm_vcpu *vcpu)
{
	struct kvm_kemari_vcpu *kv = vcpu->kemari;

	if (!kv)
		return 1;

	if (kemari_frozen(vcpu->kvm))
		return kemari_stay_frozen(vcpu, 0);

	if (kv->write.count)
		return kemari_complete(vcpu);

	if (kv->retry)
		return kemari_retry(vcpu);

	return 1;
}

/*
 * Called in the arch's run loop after every guest exit or wakeup, where
 * vCPU requests turn into exit reasons.  Returns true if the vCPU must
 * return to userspace with KVM_EXIT_KEMARI_SYNC.
 */
bool kvm_kemari_vcpu_must_stop(struct kvm_vcpu *vcpu)
{
	struct kvm_kemari_vcpu *kv = vcpu->kemari;
	bool held, own;

	if (!kv)
		return false;

	/*
	 * The run loop has just cleared KVM_REQ_UNBLOCK.  A freeze sets
	 * KVM_REQ_KEMARI_SYNC before KVM_REQ_UNBLOCK, so either this sees the
	 * former or the vCPU's next block sees the latter and returns here.
	 */
	smp_mb__after_atomic();
	/*
	 * A dirty ring push sets the quota bit before the request, and
	 * kvm_check_request() orders the bit's read after the request's.
	 */
	if (!kvm_check_request(KVM_REQ_KEMARI_SYNC, vcpu))
		return false;

	held = kv->write.count || kv->retry;
	own = held || test_bit(KVM_KEMARI_VCPU_QUOTA, &kv->atomic_flags);

	/*
	 * A push after the previous quota exit (steal time, on the way out)
	 * may have set the bit for entries that the VMM has reset since.
	 */
	if (own && !held &&
	    kemari_dirty_entries(vcpu) < vcpu->kvm->kemari->dirty_quota) {
		clear_bit(KVM_KEMARI_VCPU_QUOTA, &kv->atomic_flags);
		own = false;
	}

	if (!kemari_frozen(vcpu->kvm)) {
		/* A kick from a freeze that KVM_KEMARI_RESUME has ended. */
		if (!own)
			return false;
		/*
		 * A sync point of this vCPU's own, but a KVM_KEMARI_RESUME
		 * for an earlier one came in between (or the quota was
		 * reached): the guest must not run past it, so freeze the
		 * VM (again).
		 */
		if (kemari_freeze(vcpu->kvm, vcpu, held ?
				  KVM_KEMARI_SYNC_IO_BUS :
				  KVM_KEMARI_SYNC_DIRTY_QUOTA) && held)
			++vcpu->stat.generic.kemari_refreezes;
	}

	kemari_exit(vcpu, own ? 0 : KVM_KEMARI_SYNC_PEER);
	return true;
}

/*
 * Called by kvm_dirty_ring_push() with the number of entries in the ring
 * that the VMM has not reset.  When that reaches the dirty quota, the VM
 * stops for a checkpoint, which bounds the checkpoint's size.  A push can
 * come from atomic context (steal time is written on sched-out, under the
 * runqueue lock), so only raise the request here: the vCPU freezes the VM
 * itself, in kvm_kemari_vcpu_must_stop().
 */
void kvm_kemari_dirty_ring_push(struct kvm_vcpu *vcpu, u32 used)
{
	struct kvm_kemari *kemari = READ_ONCE(vcpu->kvm->kemari);

	/*
	 * At or above the quota, not just at it, and latched in an atomic
	 * bit: a push from kvm_sched_out() may race with the sync exit that
	 * reports the previous one, and must not be lost.
	 */
	if (!kemari || !vcpu->kemari || !kemari->dirty_quota ||
	    used < kemari->dirty_quota)
		return;

	set_bit(KVM_KEMARI_VCPU_QUOTA, &vcpu->kemari->atomic_flags);
	kvm_make_request(KVM_REQ_KEMARI_SYNC, vcpu);
}

/*
 * An interrupt, NMI, INIT or SIPI reached the local APIC of @vcpu: KVM goes
 * on accepting them while the VM is frozen (they land in the IRR, which the
 * checkpoint captures), and counts them, so that a VMM can tell whether
 * its cut was quiescent.  May be called in any context.
 */
void __kvm_kemari_injected(struct kvm_vcpu *vcpu, int vector)
{
	struct kvm_kemari *kemari = vcpu->kvm->kemari;

	if (!(atomic_read(&kemari->freeze) & 1))
		return;

	atomic64_inc(&kemari->frozen_injections);
	trace_kemari_frozen_injection(vcpu->vcpu_id, vector);
}

/*
 * Last KVM_RUN hook of the arch, on the way out to userspace.  If the
 * guest added entries to the coalesced MMIO ring since the last coalesced
 * flush sync, this exit is one (see below).  Returns KVM_RUN's return
 * value.
 */
int kvm_kemari_vcpu_run_end(struct kvm_vcpu *vcpu, int r)
{
	struct kvm_kemari_vcpu *kv = vcpu->kemari;
	struct kvm_run *run = vcpu->run;
	int f;

	if (!kv)
		return r;

	/*
	 * A vCPU waiting for INIT or SIPI was woken by a freeze: report it
	 * rather than have the VMM call KVM_RUN again to find it.
	 */
	if (r == -EAGAIN && kemari_frozen(vcpu->kvm))
		return kemari_stay_frozen(vcpu, 0);

	if (r && r != -EINTR)
		return r;

	/*
	 * A dirty ring that filled up before the quota (or without one) is a
	 * quota sync too, so that the whole VM stops for the checkpoint that
	 * empties it.  KVM_RUN returns it again until the ring is reset.
	 */
	if (!r && run->exit_reason == KVM_EXIT_DIRTY_RING_FULL) {
		kemari_freeze(vcpu->kvm, vcpu, KVM_KEMARI_SYNC_DIRTY_QUOTA);
		set_bit(KVM_KEMARI_VCPU_QUOTA, &kv->atomic_flags);
		kemari_exit(vcpu, 0);
	}

	if (!kemari_coalesced_unsynced(vcpu->kvm))
		return r;

	/*
	 * The VMM processes the coalesced ring on every exit: this one is a
	 * sync point too.  A sync exit says so in its reason.  Any other exit,
	 * or EINTR, is returned as it is, never held back in the kernel where
	 * no checkpoint could see it: an EOI, a SHUTDOWN or a single step has
	 * already happened, and a restored VM would not repeat it.
	 * KVM_RUN_KEMARI_SYNC in kvm_run->flags tells the VMM to checkpoint
	 * before it processes the ring.  The vCPU has reported the freeze
	 * unless it left userspace I/O to complete, which the VMM does with
	 * immediate_exit before the checkpoint (kemari.rst section 5).
	 */
	kemari_freeze(vcpu->kvm, vcpu, KVM_KEMARI_SYNC_COALESCED);
	if (!r && run->exit_reason == KVM_EXIT_KEMARI_SYNC) {
		run->kemari.reason |= KVM_KEMARI_SYNC_COALESCED;
		kemari_count(vcpu, KVM_KEMARI_SYNC_COALESCED);
		return 0;
	}
	f = atomic_read(&vcpu->kvm->kemari->freeze);
	kv->sync_flag = true;
	if ((f & 1) && (r || !kvm_arch_kemari_io_pending(vcpu)))
		WRITE_ONCE(kv->stopped, f);
	kemari_count(vcpu, KVM_KEMARI_SYNC_COALESCED);
	trace_kemari_sync(vcpu->vcpu_id, KVM_KEMARI_SYNC_COALESCED, &kv->write);
	return r;
}

static int kemari_check_write(const struct kvm_kemari_write *w)
{
	if (w->flags)
		return -EINVAL;

	if (!w->count)
		return (w->bus || w->len || w->addr) ? -EINVAL : 0;

	switch (w->bus) {
	case KVM_KEMARI_BUS_PIO:
		if (w->len != 1 && w->len != 2 && w->len != 4)
			return -EINVAL;
		if (w->addr > 0xffff || w->addr + w->len > 0x10000)
			return -EINVAL;
		if (w->count > KVM_KEMARI_MAX_DATA / w->len)
			return -E2BIG;
		return 0;
	case KVM_KEMARI_BUS_MMIO:
		if (w->count != 1 || !w->len || w->addr + w->len < w->addr)
			return -EINVAL;
		if (w->len > KVM_KEMARI_MAX_DATA)
			return -E2BIG;
		return 0;
	default:
		return -EINVAL;
	}
}

static int kemari_get_pending(struct kvm_kemari_vcpu *kv,
			      struct kvm_kemari_pending __user *up)
{
	u32 bytes = kemari_write_bytes(&kv->write);

	if (copy_to_user(&up->write, &kv->write, sizeof(kv->write)) ||
	    copy_to_user(up->data, kv->data, bytes) ||
	    clear_user(up->data + bytes, KVM_KEMARI_MAX_DATA - bytes))
		return -EFAULT;
	return 0;
}

static int kemari_set_pending(struct kvm_kemari_vcpu *kv,
			      struct kvm_kemari_pending __user *up)
{
	struct kvm_kemari_write w;
	int r;

	if (copy_from_user(&w, &up->write, sizeof(w)))
		return -EFAULT;

	r = kemari_check_write(&w);
	if (r)
		return r;

	/* The VMM's state replaces an abandoned instruction's retry. */
	if (!w.count) {
		memset(&kv->write, 0, sizeof(kv->write));
		kv->retry = false;
		return 0;
	}

	if (kv->write.count)
		return -EBUSY;

	if (copy_from_user(kv->data, up->data, kemari_write_bytes(&w)))
		return -EFAULT;

	kv->write = w;
	kv->retry = false;
	return 0;
}

/* vCPU ioctls, called with vcpu->mutex held. */
int kvm_kemari_vcpu_ioctl(struct kvm_vcpu *vcpu, unsigned int ioctl,
			  void __user *argp)
{
	struct kvm_kemari_vcpu *kv;

	if (!READ_ONCE(vcpu->kvm->kemari))
		return -EINVAL;

	kv = kemari_vcpu_state(vcpu);
	if (!kv)
		return -ENOMEM;

	switch (ioctl) {
	case KVM_KEMARI_GET_PENDING:
		return kemari_get_pending(kv, argp);
	case KVM_KEMARI_SET_PENDING:
		return kemari_set_pending(kv, argp);
	default:
		return -ENOTTY;
	}
}

void kvm_kemari_vcpu_destroy(struct kvm_vcpu *vcpu)
{
	/* A write still pending is dropped with the vCPU. */
	kfree(vcpu->kemari);
	vcpu->kemari = NULL;
}

/*
 * Is @vcpu in KVM_RUN without having reported the freeze @f?  A vCPU
 * outside KVM_RUN cannot run guest code without finding the VM frozen,
 * and one that has reported it (a sync exit, or EINTR once its I/O is
 * complete) only reports it again.  One that left with another exit and
 * is back in KVM_RUN to complete its I/O may still reach a device.
 */
static struct kvm_kemari_vcpu *kemari_vcpu_peek(struct kvm_vcpu *vcpu)
{
	/* Pairs with kemari_vcpu_state(): a vCPU's state, once set up. */
	return smp_load_acquire(&vcpu->kemari);
}

static bool kemari_vcpu_running(struct kvm_vcpu *vcpu, int f)
{
	struct kvm_kemari_vcpu *kv = kemari_vcpu_peek(vcpu);

	/* Pairs with kvm_kemari_vcpu_run_leave(). */
	return kv && smp_load_acquire(&kv->in_run) &&
	       READ_ONCE(kv->stopped) != f;
}

static int kemari_get_freeze(struct kvm *kvm, struct kvm_kemari *kemari,
			     struct kvm_kemari_freeze __user *up)
{
	struct kvm_kemari_freeze st = {
		.injections = atomic64_read(&kemari->frozen_injections),
	};
	int f = atomic_read(&kemari->freeze);
	struct kvm_vcpu *vcpu;
	unsigned long i;

	st.generation = kemari_generation(f);
	if (f & 1) {
		st.flags = KVM_KEMARI_FROZEN;
		kvm_for_each_vcpu(i, vcpu, kvm) {
			struct kvm_kemari_vcpu *kv = kemari_vcpu_peek(vcpu);

			if (kemari_vcpu_running(vcpu, f))
				st.running++;
			else if (kv && READ_ONCE(kv->stopped) == f)
				st.stopped++;
		}
	}

	return copy_to_user(up, &st, sizeof(st)) ? -EFAULT : 0;
}

/*
 * End the freeze, unless a vCPU that was in KVM_RUN when it began has not
 * left KVM_RUN yet: it may still be running guest code, and the VMM's cut
 * would be torn.  That is -EBUSY rather than a wait, so that a vCPU stuck
 * in the kernel (a page fault waiting on userfaultfd, say) cannot hang the
 * VMM's checkpoint thread, and the VMM's own watchdog can name it.
 * Returns 0 if it ended a freeze, 1 if the VM was not frozen.
 */
static int kemari_resume(struct kvm *kvm, struct kvm_kemari *kemari)
{
	int f = atomic_read(&kemari->freeze);
	struct kvm_vcpu *vcpu;
	unsigned long i;

	if (!(f & 1))
		return 1;

	/* Pairs with smp_mb() in kvm_kemari_vcpu_run_enter(). */
	smp_mb();
	kvm_for_each_vcpu(i, vcpu, kvm)
		if (kemari_vcpu_running(vcpu, f))
			return -EBUSY;

	/*
	 * vCPUs that were kicked and have not looked at the freeze yet find
	 * it ended and go on.  A concurrent resume may have won.
	 */
	if (atomic_cmpxchg(&kemari->freeze, f, f + 1) != f)
		return 1;

	trace_kemari_resume(kemari_generation(f));
	return 0;
}

/* VM ioctls. */
int kvm_kemari_vm_ioctl(struct kvm *kvm, unsigned int ioctl,
			unsigned long arg)
{
	struct kvm_kemari *kemari = READ_ONCE(kvm->kemari);

	switch (ioctl) {
	case KVM_KEMARI_RESUME:
	case KVM_KEMARI_FREEZE:
		if (!kemari || arg)
			return -EINVAL;
		if (ioctl == KVM_KEMARI_RESUME)
			return kemari_resume(kvm, kemari);
		return kemari_freeze(kvm, NULL, 0) ? 0 : 1;
	case KVM_KEMARI_GET_FREEZE:
		if (!kemari)
			return -EINVAL;
		return kemari_get_freeze(kvm, kemari, (void __user *)arg);
	default:
		return -ENOTTY;
	}
}
