#!/bin/bash
# The replicator's coverage-guided fuzzers (replicator/test/fuzz_target.c),
# on the host: they need no KVM.  Builds them with clang, libFuzzer, ASan
# and UBSan, makes the seeds with the replicator's own builders
# (kemari-ft-test corpus), and runs each for KEMARI_FUZZ_SECONDS (60 in
# make check, "make fuzz" runs longer).  A crash, a sanitizer report or a
# refused checkpoint that changed the replica fails the run, and leaves
# the input that did it in build/fuzz/.
. "$(dirname "$0")/lib.sh"

secs=${KEMARI_FUZZ_SECONDS:-60}
work=$BUILD/fuzz
mkdir -p "$work"
make -C "$TOP/replicator" -s KHDR="$OBJ/usr/include" O="$work" fuzzers \
	>"$work/build.log" 2>&1 || { cat "$work/build.log"; die "the fuzzers do not build"; }
rm -rf "$work/seeds"
mkdir -p "$work/seeds"
"$OUT/bin/kemari-ft-test" corpus "$work/seeds" ||
	die "kemari-ft-test corpus failed (build the userspace first)"

# Room for a full checkpoint and two more (about 35 KiB each), below the
# AF_UNIX buffer that FUZZ_WIRE writes its input into; a seed that does
# not fit would be cut, and the states after it never reached.
max_len=131072
for f in "$work"/seeds/*/*; do
	[ "$(stat -c %s "$f")" -le $max_len ] ||
		die "fuzz seed $f is $(stat -c %s "$f") bytes, over -max_len=$max_len"
done

for t in ckpt wire; do
	mkdir -p "$work/corpus-$t"
	log "fuzz $t: $secs s"
	if ! (cd "$work" && "./kemari-fuzz-$t" -max_total_time="$secs" \
		-max_len=$max_len -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$work/$t-" \
		"corpus-$t" "seeds/$t" >"$work/$t.log" 2>&1); then
		tail -40 "$work/$t.log"
		die "fuzz $t found a failure (its input: $work/$t-*)"
	fi
	log "fuzz $t: $(grep -o 'stat::number_of_executed_units: [0-9]*' "$work/$t.log" | grep -o '[0-9]*$') inputs, $(grep -o 'cov: [0-9]*' "$work/$t.log" | tail -1) edges, no failure"
done
