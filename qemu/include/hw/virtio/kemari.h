/*
 * Kemari for KVM: the output barrier at the virtqueue
 *
 * Copyright (c) 2026 The Kemari for KVM authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_VIRTIO_KEMARI_H
#define HW_VIRTIO_KEMARI_H

#include "hw/virtio/virtio.h"

/*
 * virtio.c's vring_avail_idx(), with the BQL: of the guest's avail index
 * @avail of queue @n, the part that the device may consume now.
 */
uint16_t kemari_virtio_avail_idx(VirtIODevice *vdev, unsigned int n,
                                 uint16_t avail);
/* virtio_device_unrealize(): forget @vdev. */
void kemari_virtio_unrealize(VirtIODevice *vdev);
/* __virtio_queue_reset(): queue @n of @vdev starts again from 0. */
void kemari_virtio_queue_reset(VirtIODevice *vdev, unsigned int n);

/*
 * The primary (migration/kemari.c), with the BQL and the VM stopped:
 * protection starts with the secondary holding the guest as it is now
 * (@enforce false: only trace what the barrier would hold); @request
 * asks for a checkpoint.
 */
void kemari_virtio_hold(bool enforce, void (*request)(void *), void *opaque);
/* The secondary has loaded a checkpoint of the guest as it is now. */
void kemari_virtio_commit(void);
/* Protection has ended: release everything held. */
void kemari_virtio_release(void);

/* At start-up with kemari=on: refuse devices that the barrier misses. */
bool kemari_virtio_check(Error **errp);

#endif
