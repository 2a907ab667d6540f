/*
 * Kemari for KVM: protection over COLO's checkpoint machinery
 *
 * Copyright (c) 2026 The Kemari for KVM authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef MIGRATION_KEMARI_H
#define MIGRATION_KEMARI_H

/* x-kemari-ack-timeout's default, ms: the reference replicator's. */
#define KEMARI_ACK_TIMEOUT_DEFAULT 10000

bool migrate_kemari(void);
bool kemari_caps_check(bool *cap_list, Error **errp);
void kemari_colo_primary_start(MigrationState *s);
void kemari_colo_primary_stop(void);
void kemari_colo_transaction_begin(MigrationState *s);
void kemari_colo_primary_lost(MigrationState *s);
void kemari_colo_freeze(void);
int kemari_colo_commit(void);
void kemari_colo_secondary_start(void);
void kemari_colo_incoming_activate(Error **errp);

#endif
