/*
 * Kemari for KVM: x86 vCPU checks
 *
 * Copyright (c) 2026 The Kemari for KVM authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef I386_KVM_KEMARI_H
#define I386_KVM_KEMARI_H

int kvm_kemari_arch_init_vcpu(CPUState *cs);

#endif
