/*
 * Kemari for KVM: the KVM accelerator's side
 *
 * Copyright (c) 2026 The Kemari for KVM authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef KVM_KEMARI_H
#define KVM_KEMARI_H

#include "sysemu/kemari.h"

void kvm_kemari_class_init(ObjectClass *oc);
int kvm_kemari_init(MachineState *ms, KVMState *s);
int kvm_kemari_handle_sync(CPUState *cpu, struct kvm_run *run);

/* kvm-all.c: reap every vCPU's dirty ring; all vCPUs must be stopped. */
uint64_t kvm_dirty_ring_reap_all(void);

#endif
