/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The device model: per vCPU an output device, a block device and a
 * console, each rung through an ioeventfd (so that Kemari syncs before
 * the write takes effect).
 *
 * Output records go to an external observer over TCP.  Block writes go
 * to a file and are logged for the next checkpoint.  Console lines go to
 * stderr.  All report completion in struct dev_status, a guest page that
 * only the device model writes and that every checkpoint therefore
 * carries.
 *
 * Output commit over TCP: a record counts as delivered only once the
 * observer's TCP has acknowledged its last byte (SIOCOUTQ).  Every
 * checkpoint carries the records not yet delivered, and a secondary that
 * takes over sends them again; the observer dedups by sequence number.
 * Before a checkpoint the primary waits (up to settle_ms) for the output
 * of earlier epochs to be acknowledged, so that normally only the
 * current epoch's records are carried.
 */
#ifndef REPLICATOR_DEVICES_H
#define REPLICATOR_DEVICES_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "ckpt.h"
#include "kvm.h"

struct devices {
	struct vm *vm;
	pthread_mutex_t lock;
	pthread_t thread;
	int stop_fd;			/* eventfd: ends the thread */
	int out_efd[MAX_VCPUS];
	int blk_efd[MAX_VCPUS];
	int con_efd[MAX_VCPUS];
	int observer_fd;		/* -1: not sent; out_log keeps it */
	int blk_fd;
	struct ck_blk blk_log[CK_MAX_BLK];	/* since the last checkpoint */
	uint32_t nr_blk_log;
	/* Records sent but not known delivered, oldest first. */
	struct out_record out_log[CK_MAX_OUT];
	uint64_t out_end[CK_MAX_OUT];	/* stream offset after each */
	uint32_t nr_out_log;
	uint64_t out_sent;		/* bytes written to observer_fd */
	uint64_t out_mark;		/* bytes to be acked before a checkpoint */
	bool out_plugged;		/* out_mark is set by devices__mark() */
	int settle_ms;			/* 0: do not wait for acks */
	uint64_t settle_warned_at;	/* now_ns() of the last warning */
};

int devices__init(struct devices *d, struct vm *vm, int observer_fd,
		  int blk_fd);
void devices__exit(struct devices *d);
/* Complete every doorbell already rung: called with the VM frozen. */
void devices__drain(struct devices *d);
/*
 * With the VM frozen and drained: wait up to settle_ms for the observer to
 * acknowledge the output that has left (everything, or with a plug up to
 * the last devices__mark()), then drop the delivered records from out_log.
 */
void devices__settle(struct devices *d);
/* A plug epoch was closed: the bytes in the qdisc so far leave at its ack. */
void devices__mark(struct devices *d);
/* A new, zeroed block device file for nr_vcpus; dies on failure. */
int blk__open(const char *path, unsigned int nr_vcpus);
/* Takeover: send again what the primary may have held back. */
void devices__resend(struct devices *d, const struct out_record *rec,
		     uint32_t n);

#endif /* REPLICATOR_DEVICES_H */
