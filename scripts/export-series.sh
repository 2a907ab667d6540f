#!/bin/bash
# Export kernel/ plus patches/ as a git-am-able series against the pristine
# base in build/series/: a cover letter and one mail per patch, each new
# file added by the patch whose "Adds:" line names it.  The series is then
# applied with "git am" to a scratch repository of the base files it
# touches, and each patch is run through checkpatch.pl --strict, whose
# summary goes into the cover letter.
. "$(dirname "$0")/lib.sh"
. "$TOP/configs/base.pin"

outdir=$BUILD/series
rm -rf "$outdir"
mkdir -p "$outdir"
mapfile -t series < <(series_patches)
n=${#series[@]}

newfile_diff() {
	local f=$1
	echo "diff --git a/$f b/$f"
	echo "new file mode 100644"
	diff -u --label /dev/null --label "b/$f" /dev/null "$TOP/kernel/$f" || true
}

i=0
for p in "${series[@]}"; do
	i=$((i + 1))
	mail=$outdir/$(printf '%04d' $i)-$(basename "$p" | sed 's/^[0-9]*-//')
	{
		echo "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001"
		sed -n '1,/^---$/p' "$p" | grep -v '^Adds: ' |
			sed "s/^Subject: \[PATCH\]/Subject: [PATCH $i\/$n]/"
		# Diffs in git's order: by path, new files among the rest.
		chunks=$(mktemp -d)
		for f in $(patch_adds "$p"); do
			newfile_diff "$f" > "$chunks/$(echo "$f" | tr / :)"
		done
		sed '1,/^---$/d' "$p" | awk -v d="$chunks" '
			/^diff --git / { f = $3; sub(/^a\//, "", f); gsub("/", ":", f); out = d "/" f }
			{ print > out }'
		(cd "$chunks" && ls | LC_ALL=C sort | xargs cat) > "$chunks.diff"
		git apply --stat "$chunks.diff"
		echo
		cat "$chunks.diff"
		rm -rf "$chunks" "$chunks.diff"
		printf -- '-- \nKemari for KVM\n\n'
	} > "$mail"
done

# git am against the base files the series touches.
verify=$outdir/.verify
mkdir -p "$verify"
for f in $(patch_touches "${series[@]}"); do
	if [ -f "$PRISTINE/$f" ]; then
		mkdir -p "$verify/$(dirname "$f")"
		cp "$PRISTINE/$f" "$verify/$f"
	fi
done
git -C "$verify" init -q
git -C "$verify" add -A
git -C "$verify" -c user.name=kemari -c user.email=kemari@example.org \
	commit -q -m "base: $PACKAGE $VERSION"
git -C "$verify" -c user.name=kemari -c user.email=kemari@example.org \
	am -q "$outdir"/0*.patch || die "the exported series does not git-am onto the base"
rm -rf "$verify"

# checkpatch.pl --strict on each patch.
summary=$outdir/checkpatch.txt
: > "$summary"
for mail in "$outdir"/0*.patch; do
	res=$(cd "$PRISTINE" && perl scripts/checkpatch.pl --strict --no-tree \
		--terse --show-types "$mail" 2>&1 || true)
	printf '%s\n%s\n\n' "$(basename "$mail")" "$res" >> "$summary"
done

{
	echo "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001"
	echo "From: Kemari for KVM <kemari@example.org>"
	echo "Subject: [PATCH 0/$n] KVM: Kemari event-driven VM replication"
	echo
	sed -n '/^## Cover letter/,$p' "$TOP/patches/README.md" | sed 1d
	echo
	echo "Base: $PACKAGE $VERSION (sha256 $SHA256)."
	echo
	echo "checkpatch.pl --strict:"
	echo
	sed 's/^/  /' "$summary"
	echo "Patches:"
	for p in "${series[@]}"; do echo "  $(sed -n 's/^Subject: \[PATCH\] //p' "$p")"; done
	printf -- '-- \nKemari for KVM\n'
} > "$outdir/0000-cover-letter.patch"

cat "$summary"
log "exported $n patches and a cover letter to $outdir (git am: ok)"
