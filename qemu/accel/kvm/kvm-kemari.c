/*
 * Kemari for KVM: the KVM accelerator's side
 *
 * Kemari stops the guest before any write that could become visible
 * outside it (Linux's Documentation/virt/kvm/kemari.rst): KVM holds the
 * write, freezes every vCPU and returns KVM_EXIT_KEMARI_SYNC.  This file
 * turns Kemari on (-accel kvm,kemari=on), parks each vCPU that reports a
 * freeze, and completes the freeze from the main loop once every vCPU is
 * out of KVM_RUN: the dirty rings are reaped and KVM_KEMARI_RESUME lets
 * the held writes through.  Without a secondary that is all a freeze
 * does.  With one (migration capability x-kemari, migration/kemari.c)
 * the freeze asks for a checkpoint instead, and the checkpoint ends the
 * freeze once the secondary holds it (kvm_kemari_checkpoint_begin() and
 * kvm_kemari_checkpoint_commit()).
 *
 * Copyright (c) 2026 The Kemari for KVM authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/visitor.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "qom/object.h"
#include "exec/memory.h"
#include "hw/boards.h"
#include "hw/core/cpu.h"
#include "hw/virtio/kemari.h"
#include "sysemu/cpus.h"
#include "sysemu/runstate.h"
#include "sysemu/sysemu.h"
#include "sysemu/kvm_int.h"
#include "kvm-kemari.h"
#include "trace.h"

typedef struct KVMKemari {
    bool enabled;               /* kemari=on, accepted by KVM */
    bool requested;             /* kemari=on */
    bool tsc_log;               /* kemari-tsc-log=on */
    bool exempt_irqchip;        /* kemari-exempt-irqchip=on */
    uint32_t dirty_quota;       /* kemari-dirty-quota, 0: none */
    bool no_barrier;            /* x-kemari-barrier=off */
    QEMUBH *freeze_bh;          /* completes a freeze in the main loop */
    Notifier machine_done;      /* starts dirty tracking */
    Notifier exit;              /* prints the status line */
    uint64_t sync_exits;        /* KVM_EXIT_KEMARI_SYNC seen, all vCPUs */
    uint64_t freezes;           /* freezes completed by KVM_KEMARI_RESUME */
    int64_t frozen_since;       /* first sync exit of this freeze, ns */
    int64_t last_pause_ns;      /* that to KVM_KEMARI_RESUME, last freeze */
    int64_t max_pause_ns;
    void (*checkpoint)(void *); /* asks for a checkpoint; NULL: none */
    void *checkpoint_opaque;
    bool checkpointing;         /* asked for, or being taken */
    uint32_t sync_generation;   /* the latest freeze a sync exit reported */
    uint32_t committed;         /* the latest freeze a checkpoint ended */
    uint64_t checkpoints;       /* committed checkpoints */
} KVMKemari;

static void kvm_kemari_machine_done(Notifier *n, void *unused);
static void kvm_kemari_exit(Notifier *n, void *unused);

static KVMKemari kemari = {
    .machine_done.notify = kvm_kemari_machine_done,
    .exit.notify = kvm_kemari_exit,
};

/* The status line, at exit; its counts match the kernel's kemari events. */
static void kvm_kemari_exit(Notifier *n, void *unused)
{
    info_report("kemari: %" PRIu64 " sync exits, %" PRIu64 " freezes, "
                "%" PRIu64 " checkpoints, last pause %" PRId64 " us, "
                "longest %" PRId64 " us",
                kemari.sync_exits, kemari.freezes, kemari.checkpoints,
                kemari.last_pause_ns / 1000, kemari.max_pause_ns / 1000);
}

bool kvm_kemari_enabled(void)
{
    return kemari.enabled;
}

/* With the BQL, which every update of the counts holds. */
void kvm_kemari_counts(KVMKemariCounts *c)
{
    *c = (KVMKemariCounts) {
        .sync_exits = kemari.sync_exits,
        .freezes = kemari.freezes,
        .checkpoints = kemari.checkpoints,
        .last_pause_ns = kemari.last_pause_ns,
        .max_pause_ns = kemari.max_pause_ns,
        .protecting = kemari.checkpoint != NULL,
    };
}

/*
 * KVM pushes dirty ring entries only for memory slots that log dirty
 * pages; a checkpoint needs every page written since the last one, and
 * the dirty quota counts them, from the first instruction on.  Not from
 * kvm_kemari_init(): the memory transaction that switches the slots needs
 * kvm_state, which kvm_init() sets later.  With the machine complete,
 * refuse the devices whose output the barrier at the virtqueue misses.
 */
static void kvm_kemari_machine_done(Notifier *n, void *unused)
{
    Error *err = NULL;

    if (!kvm_enabled()) {
        return;
    }
    if (!kemari_virtio_check(&err)) {
        error_report_err(err);
        exit(1);
    }
    memory_global_dirty_log_start(GLOBAL_DIRTY_KEMARI);
}

/* The end of a freeze, with the BQL and every vCPU out of KVM_RUN. */
static int kvm_kemari_resume(void)
{
    int ret = kvm_vm_ioctl(kvm_state, KVM_KEMARI_RESUME, 0);

    if (ret >= 0) {
        if (ret == 0) {
            kemari.freezes++;
            kemari.last_pause_ns = get_clock() - kemari.frozen_since;
            kemari.max_pause_ns = MAX(kemari.max_pause_ns,
                                      kemari.last_pause_ns);
        }
        kemari.frozen_since = 0;
    }
    return ret;
}

/*
 * Runs in the main loop with the BQL.  pause_all_vcpus() kicks every vCPU
 * that is still in KVM_RUN; KVM sends it back with the sync exit (or
 * EINTR), after it has completed the I/O of its previous exit, so once
 * all are paused the cut is complete and KVM_KEMARI_RESUME cannot fail
 * with EBUSY.
 */
static void kvm_kemari_freeze_bh(void *opaque)
{
    uint64_t reaped;
    int ret;

    /*
     * Protected: the checkpoint stops the vCPUs, reaps the rings and ends
     * the freeze.  Sync exits of a freeze that a checkpoint has already
     * ended, or is taking, ask for nothing.
     */
    if (kemari.checkpoint) {
        if (!kemari.checkpointing &&
            kemari.sync_generation != kemari.committed) {
            kemari.checkpointing = true;
            kemari.checkpoint(kemari.checkpoint_opaque);
        }
        return;
    }
    pause_all_vcpus();
    /*
     * A peer that reported the freeze while pause_all_vcpus() waited
     * rescheduled us; no new freeze can start with every vCPU out of
     * KVM_RUN, so that run would find nothing to do.
     */
    qemu_bh_cancel(kemari.freeze_bh);
    if (kemari.checkpoint) {
        /* Protection started while we waited: this freeze is its. */
        kemari.checkpointing = true;
        kemari.checkpoint(kemari.checkpoint_opaque);
        return;
    }
    reaped = kvm_dirty_ring_reap_all();
    ret = kvm_kemari_resume();
    trace_kvm_kemari_resume(ret, reaped, kemari.sync_exits, kemari.freezes);
    if (ret < 0) {
        error_report("kemari: KVM_KEMARI_RESUME failed: %s; stopping the VM",
                     strerror(-ret));
        vm_stop(RUN_STATE_INTERNAL_ERROR);
        return;
    }
    /*
     * ret 1: an earlier run of this bottom half ended the freeze.  A reset
     * or shutdown that a vCPU asked for while it stopped is the main
     * loop's to handle next, and a stopped VM's vm_start(): they resume
     * the vCPUs themselves.
     */
    if (qemu_reset_requested_get() || qemu_shutdown_requested_get() ||
        !runstate_is_running()) {
        return;
    }
    resume_all_vcpus();
}

/*
 * KVM_EXIT_KEMARI_SYNC, on the vCPU thread without the BQL.  Park the
 * vCPU as cpu_stop_current() does: calling KVM_RUN again while the VM is
 * frozen would only return the same exit.
 */
int kvm_kemari_handle_sync(CPUState *cpu, struct kvm_run *run)
{
    struct kvm_kemari_exit *e = &run->kemari;

    trace_kvm_kemari_sync(cpu->cpu_index, e->reason, e->generation,
                          e->write.count, e->dirty_entries);
    if (!e->generation) {
        /* The freeze ended before this exit reported it: run on. */
        return 0;
    }
    qemu_mutex_lock_iothread();
    kemari.sync_exits++;
    kemari.sync_generation = e->generation;
    if (!kemari.frozen_since) {
        kemari.frozen_since = get_clock();
    }
    cpu->stop = true;
    qemu_bh_schedule(kemari.freeze_bh);
    qemu_mutex_unlock_iothread();
    return EXCP_INTERRUPT;
}

/*
 * Protection starts (@checkpoint non-NULL) or ends.  @checkpoint is
 * called in the main loop, with the BQL, once for each freeze that
 * needs a checkpoint; it must lead to kvm_kemari_checkpoint_begin() and
 * kvm_kemari_checkpoint_commit(), or to the end of protection.  When
 * protection ends with the VM frozen, the vCPUs' next KVM_RUN reports
 * the freeze again and the freeze ends as without a secondary.
 */
void kvm_kemari_set_checkpoint(void (*checkpoint)(void *), void *opaque)
{
    kemari.checkpoint = checkpoint;
    kemari.checkpoint_opaque = opaque;
    kemari.checkpointing = false;
    if (!checkpoint && kemari.frozen_since) {
        /* Parked vCPUs of a running VM wait for the bottom half. */
        qemu_bh_schedule(kemari.freeze_bh);
    }
}

/*
 * A checkpoint starts, with the BQL, before the vCPUs are stopped: freeze
 * the VM (a freeze that a sync point started is joined), so that no
 * vCPU that the stop kicks out of KVM_RUN has a held write half done.
 */
int kvm_kemari_checkpoint_begin(void)
{
    int ret;

    kemari.checkpointing = true;
    ret = kvm_vm_ioctl(kvm_state, KVM_KEMARI_FREEZE, 0);
    if (ret < 0) {
        error_report("kemari: KVM_KEMARI_FREEZE failed: %s", strerror(-ret));
        return ret;
    }
    if (!kemari.frozen_since) {
        kemari.frozen_since = get_clock();
    }
    return 0;
}

/*
 * The secondary holds the checkpoint: end the freeze, with the BQL and
 * the vCPUs still stopped.  The held writes go out on their next KVM_RUN.
 */
int kvm_kemari_checkpoint_commit(void)
{
    struct kvm_kemari_freeze f = { };
    int ret;

    ret = kvm_vm_ioctl(kvm_state, KVM_KEMARI_GET_FREEZE, &f);
    if (ret == 0) {
        kemari.committed = f.generation;
        ret = kvm_kemari_resume();
    }
    kemari.checkpointing = false;
    if (ret < 0) {
        error_report("kemari: ending the freeze after a checkpoint failed: "
                     "%s", strerror(-ret));
        return ret;
    }
    kemari.checkpoints++;
    trace_kvm_kemari_checkpoint(kemari.committed, kemari.checkpoints,
                                kemari.last_pause_ns / 1000);
    return 0;
}

/* From kvm_init(), after the dirty ring and before any vCPU exists. */
int kvm_kemari_init(MachineState *ms, KVMState *s)
{
    uint64_t flags = KVM_KEMARI_ENABLE;
    int mask, ret;

    if (!kemari.requested) {
        if (kemari.dirty_quota || kemari.tsc_log || kemari.exempt_irqchip ||
            kemari.no_barrier) {
            error_report("kemari-dirty-quota, kemari-tsc-log, "
                         "kemari-exempt-irqchip and x-kemari-barrier "
                         "need kemari=on");
            return -EINVAL;
        }
        return 0;
    }
    /*
     * QEMU sets SEV up with the legacy KVM_SEV_INIT, which KVM cannot tell
     * from a VM whose state it can read (Linux's kemari.rst, section 10).
     */
    if (ms->cgs) {
        error_report("kemari=on: a confidential guest (confidential-guest-"
                     "support) keeps state that no checkpoint can read");
        return -ENOTSUP;
    }
    mask = kvm_vm_check_extension(s, KVM_CAP_KEMARI);
    if (mask <= 0) {
        error_report("kemari=on: this kernel does not offer KVM_CAP_KEMARI "
                     "for this VM");
        return -ENOTSUP;
    }
    if (!s->kvm_dirty_ring_size) {
        error_report("kemari=on needs the dirty ring: set dirty-ring-size "
                     "(KVM must offer KVM_CAP_DIRTY_LOG_RING)");
        return -EINVAL;
    }
    if (kemari.tsc_log) {
        flags |= KVM_KEMARI_TSC_LOG;
    }
    if (kemari.exempt_irqchip) {
        flags |= KVM_KEMARI_EXEMPT_IRQCHIP;
    }
    if (flags & ~(uint64_t)mask) {
        error_report("kemari-%s=on: this kernel does not offer it",
                     (flags & ~(uint64_t)mask & KVM_KEMARI_TSC_LOG) ?
                     "tsc-log" : "exempt-irqchip");
        return -ENOTSUP;
    }
    ret = kvm_vm_enable_cap(s, KVM_CAP_KEMARI, 0, flags,
                            (uint64_t)kemari.dirty_quota);
    if (ret == -EINVAL && kemari.dirty_quota) {
        error_report("kemari-dirty-quota=%" PRIu32 ": KVM refuses it; it must "
                     "not exceed dirty-ring-size less KVM's reserved entries "
                     "(64, and 512 more with PML on Intel)",
                     kemari.dirty_quota);
        return ret;
    }
    if (ret) {
        error_report("kemari=on: KVM_ENABLE_CAP(KVM_CAP_KEMARI) failed: %s",
                     strerror(-ret));
        return ret;
    }
    /*
     * Coalesced zones (PCI config, RTC index) would make every exit that
     * finds the ring non-empty a sync point (kemari.rst 5): write them
     * through instead.
     */
    s->coalesced_mmio = 0;
    s->coalesced_pio = false;
    qemu_add_machine_init_done_notifier(&kemari.machine_done);
    qemu_add_exit_notifier(&kemari.exit);
    /*
     * In the iohandler context, which no nested aio_poll() runs (a drain in
     * a device reset, say), so that the bottom half never resumes vCPUs in
     * the middle of someone else's pause.
     */
    kemari.freeze_bh = aio_bh_new(iohandler_get_aio_context(),
                                  kvm_kemari_freeze_bh, NULL);
    kemari.enabled = true;
    trace_kvm_kemari_enable(flags, kemari.dirty_quota);
    return 0;
}

static bool kvm_kemari_set_late(Error **errp)
{
    if (kvm_state) {
        error_setg(errp, "Cannot set properties after the accelerator has "
                   "been initialized");
        return true;
    }
    return false;
}

static bool kvm_kemari_get(Object *obj, Error **errp)
{
    return kemari.requested;
}

static void kvm_kemari_set(Object *obj, bool value, Error **errp)
{
    if (kvm_kemari_set_late(errp)) {
        return;
    }
    kemari.requested = value;
}

bool kvm_kemari_barrier(void)
{
    return !kemari.no_barrier;
}

static bool kvm_kemari_get_barrier(Object *obj, Error **errp)
{
    return kvm_kemari_barrier();
}

static void kvm_kemari_set_barrier(Object *obj, bool value, Error **errp)
{
    if (kvm_kemari_set_late(errp)) {
        return;
    }
    kemari.no_barrier = !value;
}

static bool kvm_kemari_get_tsc_log(Object *obj, Error **errp)
{
    return kemari.tsc_log;
}

static void kvm_kemari_set_tsc_log(Object *obj, bool value, Error **errp)
{
    if (kvm_kemari_set_late(errp)) {
        return;
    }
    kemari.tsc_log = value;
}

static bool kvm_kemari_get_exempt_irqchip(Object *obj, Error **errp)
{
    return kemari.exempt_irqchip;
}

static void kvm_kemari_set_exempt_irqchip(Object *obj, bool value,
                                          Error **errp)
{
    if (kvm_kemari_set_late(errp)) {
        return;
    }
    kemari.exempt_irqchip = value;
}

static void kvm_kemari_get_dirty_quota(Object *obj, Visitor *v,
                                       const char *name, void *opaque,
                                       Error **errp)
{
    uint32_t value = kemari.dirty_quota;

    visit_type_uint32(v, name, &value, errp);
}

static void kvm_kemari_set_dirty_quota(Object *obj, Visitor *v,
                                       const char *name, void *opaque,
                                       Error **errp)
{
    uint32_t value;

    if (kvm_kemari_set_late(errp) ||
        !visit_type_uint32(v, name, &value, errp)) {
        return;
    }
    kemari.dirty_quota = value;
}

void kvm_kemari_class_init(ObjectClass *oc)
{
    object_class_property_add_bool(oc, "kemari", kvm_kemari_get,
                                   kvm_kemari_set);
    object_class_property_set_description(oc, "kemari",
        "Stop the guest before every write to an in-kernel device, "
        "for replication (needs dirty-ring-size)");
    object_class_property_add_bool(oc, "kemari-tsc-log",
                                   kvm_kemari_get_tsc_log,
                                   kvm_kemari_set_tsc_log);
    object_class_property_set_description(oc, "kemari-tsc-log",
        "Let KVM log the guest's TSC reads for the restore (kemari=on)");
    object_class_property_add_bool(oc, "kemari-exempt-irqchip",
                                   kvm_kemari_get_exempt_irqchip,
                                   kvm_kemari_set_exempt_irqchip);
    object_class_property_set_description(oc, "kemari-exempt-irqchip",
        "Do not stop at writes to the in-kernel PIT, PIC and IOAPIC "
        "(kemari=on)");
    object_class_property_add_bool(oc, "x-kemari-barrier",
                                   kvm_kemari_get_barrier,
                                   kvm_kemari_set_barrier);
    object_class_property_set_description(oc, "x-kemari-barrier",
        "Hold virtio output made since the last checkpoint (default on; "
        "off lets it escape, for tests only)");
    object_class_property_add(oc, "kemari-dirty-quota", "uint32",
                              kvm_kemari_get_dirty_quota,
                              kvm_kemari_set_dirty_quota, NULL, NULL);
    object_class_property_set_description(oc, "kemari-dirty-quota",
        "Stop the guest when a vCPU has dirtied this many pages since "
        "the last stop, 0 for no quota (kemari=on)");
}
