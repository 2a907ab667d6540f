/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
#ifndef _UAPI_LINUX_KEMARI_H
#define _UAPI_LINUX_KEMARI_H

/*
 * Kemari: event-driven replication of KVM guests for fault tolerance.
 * See Documentation/virt/kvm/kemari.rst.
 *
 * The capability and exit reason numbers are taken from a private range
 * far above the numbers upstream has allocated (238 capabilities and 39
 * exit reasons in Linux 6.12), and the ioctls use numbers 0xe0 and up,
 * above the last one upstream uses (0xd5), so that they cannot collide
 * with numbers upstream hands out later.  They would be renumbered to the
 * next free upstream values on submission.
 */

#include <linux/ioctl.h>
#include <linux/types.h>

#define KVM_CAP_KEMARI			0x4b4d0000

#define KVM_EXIT_KEMARI_SYNC		0x4b4d0000

/*
 * KVM_ENABLE_CAP(KVM_CAP_KEMARI): flags in args[0]; args[1] is the dirty
 * quota, the number of dirty ring entries per vCPU and checkpoint at which
 * the vCPU stops (0: none).
 */
#define KVM_KEMARI_ENABLE		(1ULL << 0)
#define KVM_KEMARI_EXEMPT_IRQCHIP	(1ULL << 1)
#define KVM_KEMARI_TSC_LOG		(1ULL << 2)

/*
 * struct kvm_kemari_write: bus.  Numbered here, not after KVM's internal
 * buses: a write that KVM holds is on one of these two.
 */
#define KVM_KEMARI_BUS_MMIO		0
#define KVM_KEMARI_BUS_PIO		1

/* The most data one pending write can carry (a REP OUTS of 1024 dwords). */
#define KVM_KEMARI_MAX_DATA		4096

/**
 * struct kvm_kemari_write - a device write that KVM holds back
 * @bus: KVM_KEMARI_BUS_*
 * @len: PIO: bytes per element (1, 2 or 4); MMIO: bytes in all
 * @addr: port number or guest physical address of the first byte
 * @count: PIO: number of elements, all to @addr; MMIO: 1;
 *	   0 means that no write is pending (and all fields are 0)
 * @flags: reserved, 0
 */
struct kvm_kemari_write {
	__u32 bus;
	__u32 len;
	__u64 addr;
	__u32 count;
	__u32 flags;
};

/* kvm_run->kemari.reason: why the vCPU stopped (any combination). */
#define KVM_KEMARI_SYNC_IO_BUS		(1U << 0)
#define KVM_KEMARI_SYNC_COALESCED	(1U << 1)
#define KVM_KEMARI_SYNC_PEER		(1U << 2)
#define KVM_KEMARI_SYNC_DIRTY_QUOTA	(1U << 3)

/*
 * kvm_run->flags: the exit (or EINTR) is also a sync point, because the
 * coalesced MMIO ring holds entries written since the last one.  The VM
 * is frozen; checkpoint before processing the ring (kemari.rst section 5).
 * Bit 15 of kvm_run->flags, which x86 leaves free.
 */
#define KVM_RUN_KEMARI_SYNC		(1U << 15)

/* kvm_run->kemari.flags */
#define KVM_KEMARI_EXIT_DATA_TRUNCATED	(1U << 0)

#define KVM_KEMARI_INLINE_DATA		64

/* struct kvm_kemari_tsc_log: flags */
#define KVM_KEMARI_TSC_LOG_ON		(1U << 0)

/**
 * struct kvm_kemari_tsc_log - the guest TSC reads of one vCPU
 * @max: the highest value of the vCPU's own TSC (the one that a host
 *	 KVM_GET_MSRS(IA32_TSC) reads) at which KVM answered a guest read,
 *	 since the log was switched on or since the guest's latest write of
 *	 its TSC, whichever came later; after such a write, at least the TSC
 *	 right after it; 0 if there was neither.  A read by a nested guest
 *	 returns that guest's TSC, offset and scaled by the vCPU's nested
 *	 hypervisor, but is logged as the vCPU's own TSC at that moment
 * @reads: RDTSC, RDTSCP and RDMSR(IA32_TSC) since this vCPU's previous
 *	   KVM_EXIT_KEMARI_SYNC
 * @writes: WRMSR(IA32_TSC) and WRMSR(IA32_TSC_ADJUST) since then
 * @flags: KVM_KEMARI_TSC_LOG_ON if the vCPU logged its reads on its
 *	   latest KVM_RUN
 */
struct kvm_kemari_tsc_log {
	__u64 max;
	__u64 reads;
	__u32 writes;
	__u32 flags;
};

/**
 * struct kvm_kemari_exit - kvm_run->kemari for KVM_EXIT_KEMARI_SYNC
 * @reason: KVM_KEMARI_SYNC_* bits
 * @flags: KVM_KEMARI_EXIT_DATA_TRUNCATED if @data holds only the first
 *	   KVM_KEMARI_INLINE_DATA bytes; KVM_KEMARI_GET_PENDING has them all
 * @dirty_entries: entries in this vCPU's dirty ring that the VMM has not
 *	   reset yet (with a reset at every checkpoint: this checkpoint's),
 *	   sampled as the last thing before KVM_RUN returned
 * @generation: the freeze that this exit reports (see
 *	   struct kvm_kemari_freeze); 0 if the VM was not frozen any more
 * @write: this vCPU's pending write; @write.count is 0 if there is none
 * @data: the first bytes of the pending write's data
 * @tsc: this vCPU's TSC log (KVM_KEMARI_TSC_LOG); all 0 if it is off
 */
struct kvm_kemari_exit {
	__u32 reason;
	__u32 flags;
	__u32 dirty_entries;
	__u32 generation;
	struct kvm_kemari_write write;
	__u8 data[KVM_KEMARI_INLINE_DATA];
	struct kvm_kemari_tsc_log tsc;
};

/**
 * struct kvm_kemari_pending - the pending write, for checkpoints
 * @write: as in struct kvm_kemari_exit
 * @data: PIO: @write.count elements of @write.len bytes; MMIO: @write.len
 *	  bytes; the rest is ignored on input and zero on output
 */
struct kvm_kemari_pending {
	struct kvm_kemari_write write;
	__u8 data[KVM_KEMARI_MAX_DATA];
};

/* struct kvm_kemari_freeze: flags */
#define KVM_KEMARI_FROZEN		(1U << 0)

/**
 * struct kvm_kemari_freeze - KVM_KEMARI_GET_FREEZE: where the freeze stands
 * @flags: KVM_KEMARI_FROZEN while the VM is frozen
 * @generation: the number of the current freeze, or of the latest one if
 *		the VM is not frozen; freezes are numbered from 1, 0 means
 *		that the VM has never been frozen
 * @stopped: vCPUs that have reported the current freeze (a sync exit, an
 *	     exit flagged KVM_RUN_KEMARI_SYNC that leaves no I/O to
 *	     complete, or EINTR from KVM_RUN); each counts once,
 *	     however often it re-entered; 0 if not frozen
 * @running: vCPUs that are in KVM_RUN and have not reported it;
 *	     KVM_KEMARI_RESUME fails with EBUSY while this is not 0; 0 if
 *	     not frozen.  A vCPU that left KVM_RUN with another exit is in
 *	     neither count until it re-enters and reports
 * @injections: interrupts, NMIs, INITs and SIPIs that reached a local APIC
 *		of the VM while it was frozen, since the VM was created
 *		(the PIC's ExtINT output is not counted)
 * @reserved: 0
 */
struct kvm_kemari_freeze {
	__u32 flags;
	__u32 generation;
	__u32 stopped;
	__u32 running;
	__u64 injections;
	__u64 reserved[5];
};

/* 0xAE is KVMIO: the ioctls are handled on KVM's file descriptors. */
#define KVM_KEMARI_GET_PENDING	_IOR(0xAE, 0xe0, struct kvm_kemari_pending)
#define KVM_KEMARI_SET_PENDING	_IOW(0xAE, 0xe1, struct kvm_kemari_pending)
#define KVM_KEMARI_RESUME	_IO(0xAE, 0xe2)
#define KVM_KEMARI_FREEZE	_IO(0xAE, 0xe3)
#define KVM_KEMARI_GET_FREEZE	_IOR(0xAE, 0xe4, struct kvm_kemari_freeze)

#endif /* _UAPI_LINUX_KEMARI_H */
