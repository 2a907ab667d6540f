#!/usr/bin/env python3
"""Turn guest console logs from boot.sh into one test report.

Each test program is framed by KEMARI-TEST-BEGIN/END lines written by
guest-init.sh.  A program that prints TAP results counts each of them; one
that prints none counts once, by its exit status (0 pass, 4 skip, else
fail).  A program that fails without a "not ok" line (an assertion, a
crash) adds one failure.  A skip is never a pass.  Kernel warnings, a
missing END line or a guest that did not finish are failures too.

With several logs (one per kernel variant), each gets its own section and
the last line sums them all: "Result: N passed, N failed, N skipped".  The
exit status is 1 if anything failed or nothing passed.  Just above that
line, the last lines of output of every failed test, so that a CI log cut
to its tail still says why.
"""
import re
import sys

KSFT_SKIP = 4
# The SKIP directive may follow the description or, as kselftest prints
# it ("ok 5 # SKIP name: reason"), the number itself.
TAP = re.compile(r'^(not ok|ok) \d+\b\s*(.*?)\s*(# (SKIP|skip)\b.*)?$')
SPLAT = re.compile(r'(WARNING: CPU:|BUG:|Kernel panic|general protection fault|'
                   r'KASAN:|UBSAN:|possible recursive locking|'
                   r'possible circular locking|suspicious RCU usage)')


FAILURES = []
TAIL = 12


def report(path):
    passed = failed = skipped = 0
    problems = []
    cur = None
    done = False
    with open(path, errors='replace') as f:
        lines = [l.rstrip('\n') for l in f]

    for line in lines:
        if SPLAT.search(line):
            problems.append('kernel: ' + line.strip())
        if line.startswith('KEMARI-ERROR'):
            problems.append(line)
        if line.startswith('KEMARI-DONE'):
            done = True
        m = re.match(r'^KEMARI-TEST-BEGIN (\S+)(.*)$', line)
        if m:
            cur = {'name': m.group(1), 'args': m.group(2).strip(),
                   'ok': 0, 'fail': 0, 'skip': 0, 'notes': [], 'out': []}
            continue
        if cur is None:
            continue
        m = re.match(r'^KEMARI-TEST-END (\S+) rc=(\d+)$', line)
        if m:
            rc = int(m.group(2))
            tap = cur['ok'] + cur['fail'] + cur['skip']
            if rc == 0 and not tap:
                cur['ok'] += 1
            elif rc == KSFT_SKIP and not cur['fail']:
                if not tap:
                    cur['skip'] += 1
            elif rc != 0 and not cur['fail']:
                cur['fail'] += 1
                cur['notes'].append('killed (timeout)' if rc == 137
                                    else 'exit status %d' % rc)
            if cur['fail']:
                verdict = 'FAIL'
                FAILURES.append((path, cur['name'] + ' ' + cur['args'],
                                 cur['out'][-TAIL:]))
            elif cur['ok']:
                verdict = 'PASS'
            else:
                verdict = 'SKIP'
            detail = '%d ok, %d failed, %d skipped' % (
                cur['ok'], cur['fail'], cur['skip'])
            if cur['notes']:
                detail += '; ' + '; '.join(cur['notes'][:3])
            print('%-4s  %-40s %s' % (verdict, (cur['name'] + ' ' + cur['args'])[:40], detail))
            passed += cur['ok']
            failed += cur['fail']
            skipped += cur['skip']
            cur = None
            continue
        if not line.startswith('ok '):
            cur['out'].append(line)
        m = TAP.match(line.strip())
        if m:
            if m.group(4):
                cur['skip'] += 1
            elif m.group(1) == 'ok':
                cur['ok'] += 1
            else:
                cur['fail'] += 1
                cur['notes'].append('not ok: ' + m.group(2))
        elif re.match(r'^1\.\.0 # (SKIP|skip)', line.strip()):
            cur['notes'].append(line.strip())

    if cur is not None:
        print('FAIL  %-40s no end: the guest hung or crashed in it' % cur['name'])
        FAILURES.append((path, cur['name'], cur['out'][-TAIL:]))
        failed += 1
    if not done:
        problems.append('the guest did not finish (timeout, panic or crash)')
    for p in problems:
        print('FAIL  ' + p)
    failed += len(problems)

    return passed, failed, skipped


def main(paths):
    total = [0, 0, 0]
    for path in paths:
        if len(paths) > 1:
            print('== %s' % path)
        counts = report(path)
        if len(paths) > 1:
            print('   %d passed, %d failed, %d skipped' % counts)
        total = [t + c for t, c in zip(total, counts)]
    for path, name, out in FAILURES:
        print('-- failed: %s (%s), its last lines:' % (name.strip(), path))
        for line in out:
            print('   | ' + line)
    print('Result: %d passed, %d failed, %d skipped' % tuple(total))
    return 1 if total[1] or not total[0] else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
