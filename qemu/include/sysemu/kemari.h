/*
 * Kemari for KVM: event-driven replication of a running guest
 *
 * Copyright (c) 2026 The Kemari for KVM authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef SYSEMU_KEMARI_H
#define SYSEMU_KEMARI_H

/* kemari=on was given to -accel kvm and KVM accepted it. */
bool kvm_kemari_enabled(void);

#endif
