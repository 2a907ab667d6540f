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
/*
 * The hello this host's replicator would send in role (2 vCPUs, 16 MiB,
 * --timeout 1000; a primary's guest TSC at the host's rate), for fakes.
 */
struct wire_hello;
void fake_hello(struct wire_hello *h, uint32_t role);

/* security.c */
int write_psk(const char *path, const char *identity, int mode);
void test_security(void);
/*
 * A fake secondary with the test's key: accept one connection on lfd,
 * finish TLS, read the primary's hello and answer with mine.  0, or -1.
 */
struct wire_link;
int fake_secondary(int lfd, const struct wire_hello *mine, struct wire_link *l,
		   uint8_t **buf, size_t *cap);

#endif /* REPLICATOR_FT_H */
