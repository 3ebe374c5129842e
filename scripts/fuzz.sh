#!/usr/bin/env bash
# fuzz.sh runs every Go native fuzz target of the module, one after the
# other, each for the same time, and fails when any of them finds an input
# that breaks it.
#
#   scripts/fuzz.sh [DURATION] [PACKAGE...]
#
# DURATION is a -fuzztime value: a Go duration such as 30s or 5m (the
# default is 30s), or a count of runs such as 10000x. PACKAGE defaults to
# ./... . FUZZ_PARALLEL, when set, is passed as -parallel (the number of
# fuzzing workers; the default is GOMAXPROCS). FUZZ_MINIMIZE_TIME is
# -fuzzminimizetime, 10s unless set: Go's default of 60s lets minimizing
# each new input eat most of a short run. The targets are found with
# `go test -list '^Fuzz'`; their seed corpora also run as plain tests in
# every `go test`.
#
# A finding is written by `go test` to the package's
# testdata/fuzz/<Target>/ directory: rerun it with
#   go test -run '^<Target>/<file>$' <package>
# and commit it beside the fix as a regression input.
set -euo pipefail

fuzztime=${1:-30s}
if (($# > 0)); then shift; fi
packages=("$@")
if ((${#packages[@]} == 0)); then packages=(./...); fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."

flags=(-fuzzminimizetime "${FUZZ_MINIMIZE_TIME:-10s}")
if [[ -n ${FUZZ_PARALLEL:-} ]]; then flags+=(-parallel "$FUZZ_PARALLEL"); fi

# Only packages whose test files declare a Fuzz function are listed, so
# that unrelated test binaries are neither built nor started (a TestMain
# runs even for -list).
fuzzpkgs=()
while IFS=$'\t' read -r pkg dir files; do
	for f in $files; do
		if grep -q '^func Fuzz' "$dir/$f"; then
			fuzzpkgs+=("$pkg")
			break
		fi
	done
done < <(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{"\t"}}{{.Dir}}{{"\t"}}{{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}{{end}}' "${packages[@]}")
if ((${#fuzzpkgs[@]} == 0)); then
	echo "fuzz.sh: no fuzz targets found in ${packages[*]}" >&2
	exit 1
fi

# go test -list prints a package's matching tests, then "ok <package> <time>".
if ! listing=$(go test -list '^Fuzz' "${fuzzpkgs[@]}" 2>&1); then
	printf '%s\n' "$listing" >&2
	echo "fuzz.sh: listing the fuzz targets failed" >&2
	exit 1
fi
targets=()
names=()
while IFS= read -r line; do
	case $line in
	Fuzz*) names+=("$line") ;;
	ok*)
		pkg=$(awk '{print $2}' <<<"$line")
		for name in "${names[@]}"; do targets+=("$pkg $name"); done
		names=()
		;;
	*) names=() ;;
	esac
done <<<"$listing"
if ((${#targets[@]} == 0)); then
	echo "fuzz.sh: no fuzz targets found in ${packages[*]}" >&2
	exit 1
fi

echo "fuzz.sh: ${#targets[@]} targets, ${fuzztime} each"
logdir=$(mktemp -d "${TMPDIR:-/tmp}/fuzz.XXXXXX")
results=()
findings=0
start_all=$SECONDS
for target in "${targets[@]}"; do
	read -r pkg name <<<"$target"
	log="$logdir/$name.log"
	echo "=== $name ($pkg)"
	start=$SECONDS
	# The seed corpus first, as plain tests: a short -fuzztime can end
	# before the fuzzer has run every seed.
	if ! go test -count=1 -run "^${name}\$" "$pkg" >"$log" 2>&1; then
		findings=$((findings + 1))
		result="FAILED on its seed corpus"
		cat "$log"
	elif go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "${flags[@]}" "$pkg" >"$log" 2>&1; then
		result="ok"
		tail -n 3 "$log" | grep -E '^fuzz: elapsed' | tail -n 1 || true
	else
		findings=$((findings + 1))
		input=$(grep -oE 'testdata/fuzz/[^ ]+' "$log" | tail -n 1 || true)
		if [[ -n $input ]]; then
			result="FINDING: $(go list -f '{{.Dir}}' "$pkg")/$input"
		else
			result="FAILED (see $log)"
		fi
		grep -v "^fuzz: elapsed" "$log" || true
	fi
	results+=("$(printf '%-28s %-48s %5ss  %s' "$name" "$pkg" "$((SECONDS - start))" "$result")")
done

echo
echo "fuzz.sh summary: ${#targets[@]} targets, ${fuzztime} each, $((SECONDS - start_all))s in all, $findings failed"
printf '  %s\n' "${results[@]}"
if ((findings > 0)); then
	echo "fuzz.sh: logs in $logdir" >&2
	exit 1
fi
rm -rf "$logdir"
