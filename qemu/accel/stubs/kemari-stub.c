/*
 * Kemari for KVM: stubs for a build without KVM
 *
 * Copyright (c) 2026 The Kemari for KVM authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "sysemu/kemari.h"

bool kvm_kemari_enabled(void)
{
    return false;
}

bool kvm_kemari_barrier(void)
{
    return false;
}

void kvm_kemari_set_checkpoint(void (*checkpoint)(void *), void *opaque)
{
}

int kvm_kemari_checkpoint_begin(void)
{
    return -ENOSYS;
}

int kvm_kemari_checkpoint_commit(void)
{
    return -ENOSYS;
}

void kvm_kemari_counts(KVMKemariCounts *c)
{
    *c = (KVMKemariCounts) { };
}
