/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The device model: per vCPU an output device and a block device, each
 * rung through an ioeventfd (so that Kemari syncs before the write takes
 * effect), and a serial console.
 *
 * Output records go to an external observer, one UDP datagram each.  Block writes go to
 * a file and are logged for the next checkpoint.  Both report completion
 * in struct dev_status, a guest page that only the device model writes
 * and that every checkpoint therefore carries.
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
	int observer_fd;		/* -1: output is dropped (and said so) */
	int blk_fd;
	struct ck_blk blk_log[CK_MAX_BLK];	/* since the last checkpoint */
	uint32_t nr_blk_log;
	struct out_record out_log[CK_MAX_OUT];	/* since the last checkpoint */
	uint32_t nr_out_log;
	bool output_held;		/* output waits for the next ack */
};

int devices__init(struct devices *d, struct vm *vm, int observer_fd,
		  int blk_fd);
void devices__exit(struct devices *d);
/* Complete every doorbell already rung: called with the VM frozen. */
void devices__drain(struct devices *d);
/* A new, zeroed block device file for nr_vcpus; dies on failure. */
int blk__open(const char *path, unsigned int nr_vcpus);
void devices__console(struct devices *d, unsigned int vcpu, uint8_t c);
/* Takeover: send again what the primary may have held back. */
void devices__resend(struct devices *d, const struct out_record *rec,
		     uint32_t n);

#endif /* REPLICATOR_DEVICES_H */
