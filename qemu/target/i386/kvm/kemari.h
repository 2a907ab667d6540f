/*
 * Kemari for KVM: x86 vCPU state
 *
 * Copyright (c) 2026 The Kemari for KVM authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef I386_KVM_KEMARI_H
#define I386_KVM_KEMARI_H

int kvm_kemari_arch_init_vcpu(CPUState *cs);
int kvm_kemari_get_pending(CPUState *cs);
int kvm_kemari_put_pending(CPUState *cs, int level);

/* A subsection of vmstate_x86_cpu: the vCPU's pending write. */
extern const VMStateDescription vmstate_kemari_cpu;

#endif
