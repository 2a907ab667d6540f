#!/usr/bin/env python3
"""Count the runs of each test case in soak logs (scripts/soak.sh).

For every log and case: runs, passes and failures, and the first line of
each failure's reason, so that a soak says how many runs each figure comes
from.  Exit status 1 if any run failed or a log did not finish.
"""
import re
import sys

bad = False
for path in sys.argv[1:]:
    counts = {}
    cur = None
    done = False
    for line in open(path, errors='replace'):
        line = line.rstrip('\n')
        if line.startswith('KEMARI-DONE'):
            done = True
        m = re.match(r'^KEMARI-TEST-BEGIN (\S+) ?(.*)$', line)
        if m:
            cur = m.group(2) or m.group(1)
            counts.setdefault(cur, [0, 0, []])
            reason = None
            continue
        if cur is None:
            continue
        if reason is None and re.search(r'not ok|Assertion|Illegal|vector|did not stop|differs', line):
            reason = line.strip()
        m = re.match(r'^KEMARI-TEST-END \S+ rc=(\d+)$', line)
        if m:
            c = counts[cur]
            if m.group(1) == '0':
                c[0] += 1
            else:
                c[1] += 1
                c[2].append('rc=%s %s' % (m.group(1), reason or ''))
            cur = None
    print('%s%s' % (path, '' if done else ' (did not finish)'))
    bad |= not done
    for case, (ok, fail, why) in counts.items():
        print('  %-28s %4d runs, %4d passed, %4d failed' % (case, ok + fail, ok, fail))
        for w in why:
            print('    ' + w)
        bad |= fail > 0
sys.exit(1 if bad else 0)
