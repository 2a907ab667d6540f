/* SPDX-License-Identifier: GPL-2.0-only */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM kemari

#if !defined(_TRACE_KEMARI_H) || defined(TRACE_HEADER_MULTI_READ)
#define _TRACE_KEMARI_H

#include <linux/tracepoint.h>
#include <linux/kemari.h>

/* A vCPU returns to userspace with KVM_EXIT_KEMARI_SYNC. */
TRACE_EVENT(kemari_sync,
	TP_PROTO(unsigned int vcpu_id, u32 reason,
		 const struct kvm_kemari_write *w),
	TP_ARGS(vcpu_id, reason, w),

	TP_STRUCT__entry(
		__field(unsigned int,	vcpu_id)
		__field(u32,		reason)
		__field(u32,		bus)
		__field(u32,		len)
		__field(u64,		addr)
		__field(u32,		count)
	),

	TP_fast_assign(
		__entry->vcpu_id	= vcpu_id;
		__entry->reason		= reason;
		__entry->bus		= w->bus;
		__entry->len		= w->len;
		__entry->addr		= w->addr;
		__entry->count		= w->count;
	),

	TP_printk("vcpu %u reason %s pending %s addr 0x%llx len %u count %u",
		  __entry->vcpu_id,
		  __print_flags(__entry->reason, "|",
				{ KVM_KEMARI_SYNC_IO_BUS, "io_bus" },
				{ KVM_KEMARI_SYNC_COALESCED, "coalesced" },
				{ KVM_KEMARI_SYNC_PEER, "peer" },
				{ KVM_KEMARI_SYNC_DIRTY_QUOTA, "dirty_quota" }),
		  __print_symbolic(__entry->bus,
				   { KVM_KEMARI_BUS_MMIO, "mmio" },
				   { KVM_KEMARI_BUS_PIO, "pio" }),
		  __entry->addr, __entry->len, __entry->count)
);

/*
 * A freeze began: started by the sync point of vCPU @vcpu_id for @reason
 * (KVM_KEMARI_SYNC_*), or by KVM_KEMARI_FREEZE (@vcpu_id -1, @reason 0).
 */
TRACE_EVENT(kemari_freeze,
	TP_PROTO(int vcpu_id, u32 generation, u32 reason),
	TP_ARGS(vcpu_id, generation, reason),

	TP_STRUCT__entry(
		__field(int,		vcpu_id)
		__field(u32,		generation)
		__field(u32,		reason)
	),

	TP_fast_assign(
		__entry->vcpu_id	= vcpu_id;
		__entry->generation	= generation;
		__entry->reason		= reason;
	),

	TP_printk("generation %u by %s %d reason %s", __entry->generation,
		  __entry->vcpu_id < 0 ? "userspace" : "vcpu", __entry->vcpu_id,
		  __print_flags(__entry->reason, "|",
				{ KVM_KEMARI_SYNC_IO_BUS, "io_bus" },
				{ KVM_KEMARI_SYNC_COALESCED, "coalesced" },
				{ KVM_KEMARI_SYNC_DIRTY_QUOTA, "dirty_quota" }))
);

/* KVM_KEMARI_RESUME ended freeze @generation. */
TRACE_EVENT(kemari_resume,
	TP_PROTO(u32 generation),
	TP_ARGS(generation),

	TP_STRUCT__entry(
		__field(u32,		generation)
	),

	TP_fast_assign(
		__entry->generation	= generation;
	),

	TP_printk("generation %u", __entry->generation)
);

/* An interrupt reached a local APIC of a frozen VM (@vector: for a fixed one). */
TRACE_EVENT(kemari_frozen_injection,
	TP_PROTO(unsigned int vcpu_id, int vector),
	TP_ARGS(vcpu_id, vector),

	TP_STRUCT__entry(
		__field(unsigned int,	vcpu_id)
		__field(int,		vector)
	),

	TP_fast_assign(
		__entry->vcpu_id	= vcpu_id;
		__entry->vector		= vector;
	),

	TP_printk("vcpu %u vector %d", __entry->vcpu_id, __entry->vector)
);

/*
 * A vCPU abandoned an instruction that writes a piece to a device at
 * @addr that cannot join its held write @w; it re-executes it after the
 * sync point.
 */
TRACE_EVENT(kemari_retry,
	TP_PROTO(unsigned int vcpu_id, const struct kvm_kemari_write *w,
		 u64 addr),
	TP_ARGS(vcpu_id, w, addr),

	TP_STRUCT__entry(
		__field(unsigned int,	vcpu_id)
		__field(u64,		held)
		__field(u32,		len)
		__field(u64,		addr)
	),

	TP_fast_assign(
		__entry->vcpu_id	= vcpu_id;
		__entry->held		= w->addr;
		__entry->len		= w->len;
		__entry->addr		= addr;
	),

	TP_printk("vcpu %u held 0x%llx len %u next 0x%llx",
		  __entry->vcpu_id, __entry->held, __entry->len,
		  __entry->addr)
);

/*
 * A held write reached the devices on re-entry; @unclaimed is 1 if a piece
 * of it found no device and went to userspace instead.
 */
TRACE_EVENT(kemari_complete,
	TP_PROTO(unsigned int vcpu_id, const struct kvm_kemari_write *w,
		 u32 unclaimed),
	TP_ARGS(vcpu_id, w, unclaimed),

	TP_STRUCT__entry(
		__field(unsigned int,	vcpu_id)
		__field(u32,		bus)
		__field(u32,		len)
		__field(u64,		addr)
		__field(u32,		count)
		__field(u32,		unclaimed)
	),

	TP_fast_assign(
		__entry->vcpu_id	= vcpu_id;
		__entry->bus		= w->bus;
		__entry->len		= w->len;
		__entry->addr		= w->addr;
		__entry->count		= w->count;
		__entry->unclaimed	= unclaimed;
	),

	TP_printk("vcpu %u %s addr 0x%llx len %u count %u unclaimed %u",
		  __entry->vcpu_id,
		  __print_symbolic(__entry->bus,
				   { KVM_KEMARI_BUS_MMIO, "mmio" },
				   { KVM_KEMARI_BUS_PIO, "pio" }),
		  __entry->addr, __entry->len, __entry->count,
		  __entry->unclaimed)
);

#endif /* _TRACE_KEMARI_H */

/* This part must be outside protection */
#include <trace/define_trace.h>
