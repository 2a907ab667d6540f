/*
 * Kemari for KVM: x86 vCPU state
 *
 * A vCPU that stopped at a sync point holds the write it was about to
 * make (Linux's Documentation/virt/kvm/kemari.rst, section 3): KVM keeps
 * it, not the registers, and completes it after KVM_KEMARI_RESUME.  So the
 * checkpoint carries it in a subsection of the CPU, "cpu/kemari": read
 * with KVM_KEMARI_GET_PENDING whenever QEMU reads the registers, written
 * back with KVM_KEMARI_SET_PENDING on a full-state load, where the first
 * KVM_RUN completes it once.
 *
 * Copyright (c) 2026 The Kemari for KVM authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "cpu.h"
#include "migration/vmstate.h"
#include "migration/qemu-file-types.h"
#include "standard-headers/asm-x86/kvm_para.h"
#include "sysemu/kvm.h"
#include "sysemu/kemari.h"
#include <linux/kemari.h>
#include "kemari.h"

/* Each vCPU's pending write, by cpu_index; count 0 is none. */
static GPtrArray *kemari_pending;

static struct kvm_kemari_pending *kemari_pending_of(CPUState *cs)
{
    if (!kemari_pending) {
        kemari_pending = g_ptr_array_new_with_free_func(g_free);
    }
    if (kemari_pending->len <= cs->cpu_index) {
        g_ptr_array_set_size(kemari_pending, cs->cpu_index + 1);
    }
    if (!g_ptr_array_index(kemari_pending, cs->cpu_index)) {
        g_ptr_array_index(kemari_pending, cs->cpu_index) =
            g_new0(struct kvm_kemari_pending, 1);
    }
    return g_ptr_array_index(kemari_pending, cs->cpu_index);
}

/* The bytes of data a pending write carries; -1 if it is malformed. */
static int kemari_pending_bytes(const struct kvm_kemari_write *w)
{
    if (!w->count) {
        return w->bus || w->len || w->addr || w->flags ? -1 : 0;
    }
    if (w->flags) {
        return -1;
    }
    switch (w->bus) {
    case KVM_KEMARI_BUS_PIO:
        if ((w->len != 1 && w->len != 2 && w->len != 4) ||
            w->count > KVM_KEMARI_MAX_DATA / w->len ||
            w->addr > 0xffff || w->addr + w->len > 0x10000) {
            return -1;
        }
        return w->len * w->count;
    case KVM_KEMARI_BUS_MMIO:
        if (w->count != 1 || !w->len || w->len > KVM_KEMARI_MAX_DATA ||
            w->addr + w->len < w->addr) {
            return -1;
        }
        return w->len;
    }
    return -1;
}

/*
 * KVM refuses async page faults on a Kemari VM: their tokens and
 * completions live where no checkpoint sees them (kemari.rst 4.4).  A
 * guest offered them would take a #GP when it enables them, so refuse
 * the CPU model instead.
 */
int kvm_kemari_arch_init_vcpu(CPUState *cs)
{
    X86CPU *cpu = X86_CPU(cs);
    uint32_t apf = (1U << KVM_FEATURE_ASYNC_PF) |
                   (1U << KVM_FEATURE_ASYNC_PF_INT);

    if (!kvm_kemari_enabled()) {
        return 0;
    }
    /* Here, with the BQL, so that no later lookup grows the table. */
    kemari_pending_of(cs);
    if (cpu->expose_kvm && (cpu->env.features[FEAT_KVM] & apf)) {
        error_report("kemari=on: the guest must not be offered async page "
                     "faults, which KVM refuses on a Kemari VM; add "
                     "kvm-asyncpf=off,kvm-asyncpf-int=off to -cpu");
        return -ENOTSUP;
    }
    return 0;
}

/* From kvm_arch_get_registers(): the vCPU is stopped or this is its thread. */
int kvm_kemari_get_pending(CPUState *cs)
{
    int ret;

    if (!kvm_kemari_enabled()) {
        return 0;
    }
    ret = kvm_vcpu_ioctl(cs, KVM_KEMARI_GET_PENDING, kemari_pending_of(cs));
    if (ret < 0) {
        error_report("kemari: KVM_KEMARI_GET_PENDING on vCPU %d failed: %s",
                     cs->cpu_index, strerror(-ret));
    }
    return ret;
}

/*
 * From kvm_arch_put_registers().  A full-state load (incoming migration,
 * a checkpoint on the secondary) replaces whatever KVM held with what the
 * checkpoint holds: discard, then set.  Lower levels leave it alone.
 */
int kvm_kemari_put_pending(CPUState *cs, int level)
{
    struct kvm_kemari_pending none = { };
    struct kvm_kemari_pending *p;
    int ret;

    if (!kvm_kemari_enabled() || level != KVM_PUT_FULL_STATE) {
        return 0;
    }
    p = kemari_pending_of(cs);
    ret = kvm_vcpu_ioctl(cs, KVM_KEMARI_SET_PENDING, &none);
    if (ret < 0) {
        error_report("kemari: KVM_KEMARI_SET_PENDING on vCPU %d could not "
                     "discard the held write: %s", cs->cpu_index,
                     strerror(-ret));
        return ret;
    }
    if (p->write.count) {
        ret = kvm_vcpu_ioctl(cs, KVM_KEMARI_SET_PENDING, p);
    }
    if (ret < 0) {
        error_report("kemari: KVM_KEMARI_SET_PENDING on vCPU %d refused the "
                     "checkpoint's pending write (bus %u, address 0x%" PRIx64
                     ", %u x %u bytes): %s", cs->cpu_index, p->write.bus,
                     (uint64_t)p->write.addr, p->write.count, p->write.len,
                     strerror(-ret));
    }
    return ret;
}

static int kemari_pending_put(QEMUFile *f, void *pv, size_t size,
                              const VMStateField *field, JSONWriter *vmdesc)
{
    struct kvm_kemari_pending *p = kemari_pending_of(CPU(pv));
    int bytes = kemari_pending_bytes(&p->write);

    if (bytes < 0) {
        error_report("kemari: KVM returned a malformed pending write");
        return -EINVAL;
    }
    qemu_put_be32(f, p->write.bus);
    qemu_put_be32(f, p->write.len);
    qemu_put_be64(f, p->write.addr);
    qemu_put_be32(f, p->write.count);
    qemu_put_be32(f, p->write.flags);
    qemu_put_buffer(f, p->data, bytes);
    return 0;
}

/*
 * Checked here, before anything is stored, with the rules of kemari.rst
 * section 3; KVM checks it again at KVM_KEMARI_SET_PENDING.
 */
static int kemari_pending_get(QEMUFile *f, void *pv, size_t size,
                              const VMStateField *field)
{
    CPUState *cs = CPU(pv);
    struct kvm_kemari_write w;
    struct kvm_kemari_pending *p;
    int bytes;

    w.bus = qemu_get_be32(f);
    w.len = qemu_get_be32(f);
    w.addr = qemu_get_be64(f);
    w.count = qemu_get_be32(f);
    w.flags = qemu_get_be32(f);
    bytes = kemari_pending_bytes(&w);
    if (bytes < 0) {
        error_report("kemari: vCPU %d: the stream holds a malformed pending "
                     "write (bus %u, address 0x%" PRIx64 ", %u x %u bytes, "
                     "flags 0x%x)", cs->cpu_index, w.bus, (uint64_t)w.addr,
                     w.count, w.len, w.flags);
        return -EINVAL;
    }
    /*
     * Also without a held write: a Kemari secondary must be passive, and
     * only kemari=on makes it so (migration/kemari.c).
     */
    if (!kvm_kemari_enabled()) {
        error_report("kemari: the stream comes from a QEMU with kemari=on, "
                     "and vCPU %d may hold a device write that only KVM with "
                     "Kemari can complete: start this QEMU with "
                     "-accel kvm,kemari=on", cs->cpu_index);
        return -EINVAL;
    }
    p = kemari_pending_of(cs);
    memset(p, 0, sizeof(*p));
    if (qemu_get_buffer(f, p->data, bytes) != bytes) {
        memset(p, 0, sizeof(*p));
        return -EIO;
    }
    p->write = w;
    return 0;
}

static const VMStateInfo vmstate_info_kemari_pending = {
    .name = "kemari-pending",
    .get = kemari_pending_get,
    .put = kemari_pending_put,
};

/*
 * Only a Kemari VM sends it, always, so that other streams stay as they
 * were and a destination without kemari=on refuses a Kemari stream.
 */
static bool kemari_cpu_needed(void *opaque)
{
    return kvm_kemari_enabled();
}

const VMStateDescription vmstate_kemari_cpu = {
    .name = "cpu/kemari",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = kemari_cpu_needed,
    .fields = (VMStateField[]) {
        {
            .name = "pending",
            .info = &vmstate_info_kemari_pending,
            .flags = VMS_SINGLE,
        },
        VMSTATE_END_OF_LIST()
    }
};
