/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef __LINUX_KEMARI_H
#define __LINUX_KEMARI_H

#include <linux/atomic.h>
#include <linux/errno.h>
#include <linux/types.h>
#include <uapi/linux/kemari.h>

struct kvm;
struct kvm_enable_cap;
struct kvm_io_bus;
struct kvm_io_device;
struct kvm_io_range;
struct kvm_vcpu;

/**
 * struct kvm_kemari - per-VM Kemari state
 * @flags: the KVM_KEMARI_* flags userspace passed to KVM_ENABLE_CAP
 * @dirty_quota: dirty ring entries per vCPU at which it stops (0: none)
 * @freeze: odd from the start of a freeze (the first sync point of a
 *	checkpoint, or KVM_KEMARI_FREEZE) until KVM_KEMARI_RESUME, even
 *	after it; it grows by one at each start and end, so that each
 *	freeze has a value of its own, and (@freeze + 1) / 2 numbers it.
 *	While it is odd no vCPU enters the guest
 * @coalesced_written: 1 if a guest write went to a coalesced MMIO zone
 *	since the latest coalesced flush sync
 * @frozen_injections: interrupts that reached a local APIC while frozen
 *
 * Allocated when userspace enables KVM_CAP_KEMARI and freed with the VM.
 * kvm->kemari is NULL while Kemari is off, so a NULL check is the whole
 * cost of the feature on a VM that does not use it.
 */
struct kvm_kemari {
	u64 flags;
	u32 dirty_quota;
	atomic_t freeze;
	atomic_t coalesced_written;
	atomic64_t frozen_injections;
};

/* struct kvm_kemari_vcpu: atomic_flags */
#define KVM_KEMARI_VCPU_QUOTA	0	/* the dirty quota was reached */

/**
 * struct kvm_kemari_vcpu - per-vCPU Kemari state
 * @write: the write held back until the next KVM_RUN (count 0: none)
 * @completing: set while KVM performs @write, so that the bus write is
 *	not held a second time
 * @retry: the vCPU abandoned an instruction whose device writes do not
 *	fit one pending write (kvm_arch_kemari_retry_begin()), and
 *	re-executes it at its next KVM_RUN; @write is empty meanwhile
 * @passing: set while it re-executes it, so that its writes go through
 * @emulating: the arch is emulating an instruction that it can abandon
 * @emul_passed: a device write of that instruction went through unheld
 *	(a coalesced zone, an exempt device), so it must not run again
 * @retry_ip: where the abandoned instruction starts, and @retry_type and
 *	@retry_addr how it was being emulated, as the arch records them
 * @atomic_flags: KVM_KEMARI_VCPU_QUOTA, set by a dirty ring push (which
 *	may come from kvm_sched_out()) and cleared by the sync exit that
 *	reports it
 * @in_run: the vCPU's task is in KVM_RUN
 * @stopped: the value of kvm_kemari.freeze when the vCPU last reported a
 *	freeze (a sync exit, an exit flagged KVM_RUN_KEMARI_SYNC with no I/O
 *	left to complete, or EINTR from KVM_RUN with its I/O complete);
 *	equal to it while frozen if the vCPU has stopped for this freeze
 * @sync_flag: the exit that KVM_RUN returns is a coalesced flush sync:
 *	set KVM_RUN_KEMARI_SYNC in kvm_run->flags on the way out
 * @tsc_intercepted: the arch logs the guest's TSC reads (KVM_KEMARI_TSC_LOG
 *	as of the vCPU's latest KVM_RUN)
 * @tsc: the TSC log since the last sync exit
 * @data: the data of @write
 *
 * Allocated on the vCPU's first KVM_RUN (or Kemari ioctl) and only ever
 * written by the task that holds vcpu->mutex, but for @atomic_flags;
 * KVM_KEMARI_RESUME and KVM_KEMARI_GET_FREEZE read @in_run and @stopped.
 */
struct kvm_kemari_vcpu {
	struct kvm_kemari_write write;
	bool completing;
	bool retry;
	bool passing;
	bool emulating;
	bool emul_passed;
	u64 retry_ip;
	u64 retry_addr;
	int retry_type;
	unsigned long atomic_flags;
	bool in_run;
	int stopped;
	bool sync_flag;
	bool tsc_intercepted;
	struct kvm_kemari_tsc_log tsc;
	u8 data[KVM_KEMARI_MAX_DATA];
};

#ifdef CONFIG_KVM_KEMARI
int kvm_kemari_check_extension(struct kvm *kvm);
int kvm_kemari_enable_cap(struct kvm *kvm, struct kvm_enable_cap *cap);
void kvm_kemari_destroy_vm(struct kvm *kvm);
int kvm_kemari_vm_ioctl(struct kvm *kvm, unsigned int ioctl,
			unsigned long arg);

int kvm_kemari_vcpu_ioctl(struct kvm_vcpu *vcpu, unsigned int ioctl,
			  void __user *argp);
void kvm_kemari_vcpu_destroy(struct kvm_vcpu *vcpu);

/* Only a vCPU of a Kemari VM that has entered KVM_RUN holds writes. */
#define kvm_kemari_vcpu_active(vcpu)	(!!(vcpu)->kemari)
int kvm_kemari_hold_write(struct kvm_vcpu *vcpu, int bus_idx,
			  struct kvm_io_bus *bus, int first_dev,
			  const struct kvm_io_range *range, const void *val);
bool kvm_kemari_refuse_resampler(struct kvm *kvm);
void kvm_kemari_publish(struct kvm *kvm, struct kvm_kemari *kemari);

/* Called by KVM_RUN around kvm_arch_vcpu_ioctl_run(). */
int kvm_kemari_vcpu_run_enter(struct kvm_vcpu *vcpu);
void kvm_kemari_vcpu_run_leave(struct kvm_vcpu *vcpu);

/* Called by the arch's KVM_RUN, in this order. */
int kvm_kemari_vcpu_run_uninit(struct kvm_vcpu *vcpu);
void kvm_kemari_vcpu_run_begin(struct kvm_vcpu *vcpu);
int kvm_kemari_vcpu_run(struct kvm_vcpu *vcpu);
bool kvm_kemari_vcpu_must_stop(struct kvm_vcpu *vcpu);
int kvm_kemari_vcpu_run_end(struct kvm_vcpu *vcpu, int r);

void kvm_kemari_dirty_ring_push(struct kvm_vcpu *vcpu, u32 used);

/*
 * An interrupt reached the vCPU's local APIC: counted if the VM is frozen.
 * A macro, because struct kvm is not defined yet where this is included.
 */
#define kvm_kemari_injected(vcpu, vector)				\
do {									\
	struct kvm_vcpu *__vcpu = (vcpu);				\
									\
	if (unlikely(READ_ONCE(__vcpu->kvm->kemari)))			\
		__kvm_kemari_injected(__vcpu, vector);			\
} while (0)
void __kvm_kemari_injected(struct kvm_vcpu *vcpu, int vector);

/* Arch hooks. */
bool kvm_arch_kemari_supported(struct kvm *kvm);
int kvm_arch_kemari_install(struct kvm *kvm, struct kvm_kemari *kemari);
u64 kvm_arch_kemari_flags(void);
void kvm_arch_kemari_vcpu_enter(struct kvm_vcpu *vcpu);
bool kvm_arch_kemari_io_pending(struct kvm_vcpu *vcpu);
bool kvm_arch_kemari_retry_begin(struct kvm_vcpu *vcpu);
int kvm_arch_kemari_retry(struct kvm_vcpu *vcpu);
bool kvm_arch_kemari_dev_internal(struct kvm *kvm, struct kvm_io_device *dev);
void kvm_arch_kemari_pio_exit(struct kvm_vcpu *vcpu, u16 port, int size,
			      const void *data);

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

/* Without Kemari, its ioctls reach the arch like any unknown one. */
static inline void kvm_kemari_vcpu_destroy(struct kvm_vcpu *vcpu) {}

static inline bool kvm_kemari_vcpu_active(struct kvm_vcpu *vcpu)
{
	return false;
}

static inline int kvm_kemari_hold_write(struct kvm_vcpu *vcpu, int bus_idx,
					struct kvm_io_bus *bus, int first_dev,
					const struct kvm_io_range *range,
					const void *val)
{
	return 0;
}

static inline bool kvm_kemari_refuse_resampler(struct kvm *kvm)
{
	return false;
}

static inline int kvm_kemari_vcpu_run_enter(struct kvm_vcpu *vcpu)
{
	return 0;
}

static inline void kvm_kemari_vcpu_run_leave(struct kvm_vcpu *vcpu) {}

static inline int kvm_kemari_vcpu_run_uninit(struct kvm_vcpu *vcpu)
{
	return 1;
}

static inline void kvm_kemari_vcpu_run_begin(struct kvm_vcpu *vcpu) {}

static inline int kvm_kemari_vcpu_run(struct kvm_vcpu *vcpu)
{
	return 1;
}

static inline bool kvm_kemari_vcpu_must_stop(struct kvm_vcpu *vcpu)
{
	return false;
}

static inline int kvm_kemari_vcpu_run_end(struct kvm_vcpu *vcpu, int r)
{
	return r;
}

static inline void kvm_kemari_dirty_ring_push(struct kvm_vcpu *vcpu, u32 used)
{
}

static inline void kvm_kemari_injected(struct kvm_vcpu *vcpu, int vector) {}

#endif /* CONFIG_KVM_KEMARI */

#endif /* __LINUX_KEMARI_H */
