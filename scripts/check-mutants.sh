#!/bin/bash
# Prove that the checkpoint parser's tests can fail: delete each check of
# replicator/ckpt.c in turn (each "return refuse(why, ...)" and each
# reason of ck__check_write()), rebuild kemari-ft-test, and run its
# "checks" cases (test/fuzz.c), which need no KVM and run here on the
# host.  Every deletion must make a case fail; one that does not is a
# check with no test, and fails this script.  About a second a mutant
# (one object rebuilt, ccache).
. "$(dirname "$0")/lib.sh"

work=$BUILD/mutants
orig=$TOP/replicator/ckpt.c
rm -rf "$work/src"
mkdir -p "$work"
cp -r "$TOP/replicator" "$work/src"
build() {
	make -C "$work/src" -s CC="ccache gcc" KHDR="$OBJ/usr/include" \
		O="$work/out" "$work/out/kemari-ft-test" >"$work/build.log" 2>&1
}
build || { cat "$work/build.log"; die "kemari-ft-test does not build"; }
"$work/out/kemari-ft-test" checks >"$work/control.tap" ||
	{ cat "$work/control.tap"; die "the checks fail with every check in place"; }

total=0 failed=0 crashed=0 missed=()
while IFS=: read -r n text; do
	total=$((total + 1))
	sed -E -e "${n}s/return refuse\(why, \"[^\"]*\"\);/(void)why;/" \
		-e "${n}s/return \"[^\"]*\";/(void)0;/" "$orig" >"$work/src/ckpt.c"
	cmp -s "$orig" "$work/src/ckpt.c" && die "line $n of ckpt.c: no check to delete"
	# make compares mtimes, which may not tell two mutants a second apart.
	rm -f "$work/out/obj/ckpt.o"
	build || { cat "$work/build.log"; die "the mutant without line $n does not build"; }
	# A deleted bounds check may crash the test, or hang it: caught too.
	rc=0
	timeout 60 bash -c '"$0" checks >"$1" 2>&1' "$work/out/kemari-ft-test" \
		"$work/mutant.tap" 2>/dev/null || rc=$?
	if [ $rc -eq 0 ]; then
		missed+=("ckpt.c:$n:$text")
	elif [ $rc -gt 128 ] || [ $rc -eq 124 ]; then
		crashed=$((crashed + 1))
	else
		failed=$((failed + 1))
	fi
done < <(grep -nP '^\t+return "|return refuse\(why, "' "$orig")
cp "$orig" "$work/src/ckpt.c"
# A grep that finds nothing (a rename) must not pass for "all caught".
[ "$total" -ge 30 ] || die "only $total checks found in ckpt.c: has the pattern of this script gone stale?"

log "mutants: of $total checks of ckpt.c, each deleted alone, $failed made a case of kemari-ft-test checks fail and $crashed crashed it; ${#missed[@]} went unnoticed"
if [ ${#missed[@]} -gt 0 ]; then
	printf '  not caught: %s\n' "${missed[@]}" >&2
	die "a check of replicator/ckpt.c has no case in test/fuzz.c"
fi
