/* SPDX-License-Identifier: GPL-2.0-only */
/* The harness that kemari-ft-test's parts share (ft_test.c). */
#ifndef REPLICATOR_FT_H
#define REPLICATOR_FT_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * exe: the product binary, kemari-replicator; exe_hooks: the test build,
 * kemari-replicator-test, for the cases that need its hooks.
 */
extern char exe[PATH_MAX], exe_hooks[PATH_MAX + 8], dir[64], psk_file[PATH_MAX];
extern bool spawn_bare;		/* spawn() adds no key and no --listen */

uint64_t rnd(void);
void tap(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tap_skip(const char *what, const char *reason);
pid_t spawn(const char *out, char *const argv[]);
int reap(pid_t pid, int secs);
bool exited(int status, int code);
bool file_has(const char *path, const char *needle);
void dump(const char *path);

/* fuzz.c */
void test_checks(void);
void test_fuzz(unsigned int cases);
void fuzz_corpus(const char *out);

/* shadow.c */
void test_shadow(void);

/* security.c */
int write_psk(const char *path, const char *identity, int mode);
void test_security(void);

#endif /* REPLICATOR_FT_H */
