/*
 * Kemari for KVM: the output barrier at the virtqueue
 *
 * A Kemari VM stops before every doorbell (KVM_EXIT_KEMARI_SYNC), but a
 * virtio device model does not wait for one: once kicked it keeps
 * consuming its queue (virtio-net's TX bottom half or timer, virtio-blk's
 * loop) while notifications are off, and so sends out requests that the
 * guest made after the last checkpoint.  A secondary that takes over from
 * that checkpoint cannot reproduce them.
 *
 * While a secondary protects the guest, the barrier shows each device
 * only the requests that were in its avail ring when the secondary last
 * loaded a checkpoint: the avail index that the device reads is clamped
 * to the one of the guest's memory at that checkpoint.  A device that
 * finds more asks for a checkpoint; after the commit its queue is
 * notified, so that it goes on.  Requests below the clamp may go out
 * twice (once by the primary, again by a secondary that took over before
 * their completion was checkpointed), as after any Remus-style failover;
 * never one that the secondary does not hold.
 *
 * virtio-net's receive queues are exempt: what they consume is the
 * guest's input.  Packed virtqueues, vhost and iothreads (the barrier
 * runs with the BQL) are refused at start-up, as are NICs and drives of
 * other devices, whose output no barrier holds.
 *
 * Copyright (c) 2026 The Kemari for KVM authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/bitmap.h"
#include "qemu/main-loop.h"
#include "qom/object.h"
#include "hw/virtio/virtio.h"
#include "hw/virtio/virtio-access.h"
#include "hw/virtio/virtio-blk.h"
#include "hw/virtio/virtio-net.h"
#include "hw/virtio/kemari.h"
#include "standard-headers/linux/virtio_ring.h"
#include "net/net.h"
#include "net/vhost_net.h"
#include "sysemu/block-backend.h"
#include "trace.h"

/* What a device may consume: its queues' avail index at the checkpoint. */
typedef struct KemariVirtioDev {
    uint16_t limit[VIRTIO_QUEUE_MAX];
    DECLARE_BITMAP(held, VIRTIO_QUEUE_MAX);   /* met the limit */
} KemariVirtioDev;

static struct {
    bool armed;                 /* a secondary protects the guest */
    bool enforce;               /* hold, not only trace */
    bool requested;             /* a checkpoint was asked for */
    void (*request)(void *);
    void *opaque;
    GHashTable *devs;           /* VirtIODevice * -> KemariVirtioDev * */
    uint64_t held;              /* queues held, for the trace */
} kv;

/* virtio-net's receive queues consume the guest's input. */
static bool kemari_virtio_exempt(VirtIODevice *vdev, unsigned int n)
{
    VirtIONet *net = (VirtIONet *)object_dynamic_cast(OBJECT(vdev),
                                                      TYPE_VIRTIO_NET);

    return net && n % 2 == 0 && n < 2 * net->max_queue_pairs;
}

static KemariVirtioDev *kemari_virtio_dev(VirtIODevice *vdev)
{
    KemariVirtioDev *d = g_hash_table_lookup(kv.devs, vdev);

    if (!d) {
        d = g_new0(KemariVirtioDev, 1);
        g_hash_table_insert(kv.devs, vdev, d);
    }
    return d;
}

/*
 * The guest's memory is what the secondary holds (the VM is stopped
 * since the checkpoint's RAM was taken): each queue may go up to its
 * avail index there.  A queue that the guest has not set up yet gets
 * its last avail index, 0: all it will get is held until the next.
 */
static int kemari_virtio_snapshot(Object *obj, void *opaque)
{
    VirtIODevice *vdev = (VirtIODevice *)object_dynamic_cast(obj,
                                                    TYPE_VIRTIO_DEVICE);
    KemariVirtioDev *d;
    unsigned int n;

    if (!vdev) {
        return 0;
    }
    d = kemari_virtio_dev(vdev);
    for (n = 0; n < VIRTIO_QUEUE_MAX; n++) {
        hwaddr avail = virtio_queue_get_avail_addr(vdev, n);

        if (!virtio_queue_get_num(vdev, n)) {
            continue;
        }
        d->limit[n] = avail && virtio_queue_get_desc_addr(vdev, n) ?
            virtio_lduw_phys(vdev, avail + offsetof(struct vring_avail, idx)) :
            virtio_queue_get_last_avail_idx(vdev, n);
    }
    return 0;
}

/* After a commit, in the main loop: held queues consume what they may. */
static void kemari_virtio_notify_bh(void *opaque)
{
    GHashTableIter it;
    gpointer key, value;

    g_hash_table_iter_init(&it, kv.devs);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        KemariVirtioDev *d = value;
        unsigned long n;

        for (n = find_first_bit(d->held, VIRTIO_QUEUE_MAX);
             n < VIRTIO_QUEUE_MAX;
             n = find_next_bit(d->held, VIRTIO_QUEUE_MAX, n + 1)) {
            clear_bit(n, d->held);
            if (kv.enforce) {
                virtio_queue_notify(key, n);
            }
        }
    }
    if (!kv.armed) {
        g_hash_table_remove_all(kv.devs);
    }
}

uint16_t kemari_virtio_avail_idx(VirtIODevice *vdev, unsigned int n,
                                 uint16_t avail)
{
    KemariVirtioDev *d;
    uint16_t limit;
    unsigned int i;

    if (!kv.armed || kemari_virtio_exempt(vdev, n)) {
        return avail;
    }
    d = g_hash_table_lookup(kv.devs, vdev);
    if (!d) {
        /* Plugged since the checkpoint: hold all it has until the next. */
        d = kemari_virtio_dev(vdev);
        for (i = 0; i < VIRTIO_QUEUE_MAX; i++) {
            d->limit[i] = virtio_queue_get_last_avail_idx(vdev, i);
        }
    }
    limit = d->limit[n];
    if ((int16_t)(avail - limit) <= 0) {
        return avail;
    }
    if (!test_and_set_bit(n, d->held)) {
        kv.held++;
        trace_kemari_virtio_hold(vdev->name, n, avail, limit, kv.enforce,
                                 kv.held);
    }
    if (!kv.enforce) {
        return avail;
    }
    if (!kv.requested) {
        kv.requested = true;
        kv.request(kv.opaque);
    }
    return limit;
}

void kemari_virtio_unrealize(VirtIODevice *vdev)
{
    if (kv.devs) {
        g_hash_table_remove(kv.devs, vdev);
    }
}

void kemari_virtio_hold(bool enforce, void (*request)(void *), void *opaque)
{
    if (!kv.devs) {
        kv.devs = g_hash_table_new_full(NULL, NULL, NULL, g_free);
    }
    kv.enforce = enforce;
    kv.request = request;
    kv.opaque = opaque;
    kv.requested = false;
    object_child_foreach_recursive(object_get_root(),
                                   kemari_virtio_snapshot, NULL);
    kv.armed = true;
}

void kemari_virtio_commit(void)
{
    if (!kv.armed) {
        return;
    }
    kv.requested = false;
    object_child_foreach_recursive(object_get_root(),
                                   kemari_virtio_snapshot, NULL);
    aio_bh_schedule_oneshot(qemu_get_aio_context(), kemari_virtio_notify_bh,
                            NULL);
}

void kemari_virtio_release(void)
{
    if (!kv.armed) {
        return;
    }
    kv.armed = false;
    aio_bh_schedule_oneshot(qemu_get_aio_context(), kemari_virtio_notify_bh,
                            NULL);
}

/* A virtio device whose queues some other thread or process consumes. */
static int kemari_virtio_check_dev(Object *obj, void *opaque)
{
    Error **errp = opaque;
    VirtIODevice *vdev = (VirtIODevice *)object_dynamic_cast(obj,
                                                    TYPE_VIRTIO_DEVICE);
    const char *type = object_get_typename(obj);
    VirtIONet *net;

    if (!vdev) {
        return 0;
    }
    if (g_str_has_prefix(type, "vhost-")) {
        error_setg(errp, "kemari=on: %s (%s) is served outside QEMU, where "
                   "the output barrier cannot hold its output", vdev->name,
                   type);
        return 1;
    }
    if (virtio_host_has_feature(vdev, VIRTIO_F_RING_PACKED)) {
        error_setg(errp, "kemari=on: %s offers packed virtqueues, which the "
                   "output barrier cannot hold: set packed=off", vdev->name);
        return 1;
    }
    if (object_property_find(obj, "iothread") &&
        object_property_get_link(obj, "iothread", NULL)) {
        error_setg(errp, "kemari=on: %s runs in an iothread, outside the "
                   "output barrier: drop its iothread", vdev->name);
        return 1;
    }
    net = (VirtIONet *)object_dynamic_cast(obj, TYPE_VIRTIO_NET);
    if (net && net->nic) {
        NetClientState *nc = qemu_get_queue(net->nic);

        if (nc->peer && get_vhost_net(nc->peer)) {
            error_setg(errp, "kemari=on: %s uses vhost, which the output "
                       "barrier cannot hold: set vhost=off on its netdev",
                       vdev->name);
            return 1;
        }
    }
    return 0;
}

static void kemari_virtio_check_nic(NICState *nic, void *opaque)
{
    Error **errp = opaque;
    Object *dev = nic->opaque;

    if (!*errp && !object_dynamic_cast(dev, TYPE_VIRTIO_NET)) {
        error_setg(errp, "kemari=on: NIC %s (%s) sends without a virtqueue, "
                   "which the output barrier cannot hold: use virtio-net",
                   nic->ncs[0].name, object_get_typename(dev));
    }
}

bool kemari_virtio_check(Error **errp)
{
    ERRP_GUARD();
    BlockBackend *blk;

    if (object_child_foreach_recursive(object_get_root(),
                                       kemari_virtio_check_dev, errp)) {
        return false;
    }
    qemu_foreach_nic(kemari_virtio_check_nic, errp);
    if (*errp) {
        return false;
    }
    for (blk = blk_all_next(NULL); blk; blk = blk_all_next(blk)) {
        DeviceState *dev = blk_get_attached_dev(blk);

        if (dev && !object_dynamic_cast(OBJECT(dev), TYPE_VIRTIO_BLK)) {
            error_setg(errp, "kemari=on: a drive (%s) is attached to %s, "
                       "which writes without a virtqueue that the output "
                       "barrier can hold: use virtio-blk", blk_name(blk),
                       object_get_typename(OBJECT(dev)));
            return false;
        }
    }
    return true;
}
