#!/bin/sh
# run.sh DIR SECONDS TARGET... - run each libFuzzer target DIR/fuzz_TARGET
# for SECONDS, starting from the committed seeds (tests/fuzz/corpus/TARGET,
# read only) and a working corpus of its own (DIR/corpus/TARGET, kept
# between runs).  A crash, leak, timeout or out-of-memory leaves its input
# in DIR/artifacts/TARGET/ and makes the run fail, after every target ran.
# Run from the top of the source tree (make fuzz does).
set -eu

dir=$1
secs=$2
shift 2
ntargets=$#
failed=""
for t in "$@"; do
	work="$dir/corpus/$t"
	art="$dir/artifacts/$t"
	log="$dir/$t.log"
	mkdir -p "$work" "$art"
	set -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
	    -max_len=32768 -print_final_stats=1 -artifact_prefix="$art/"
	if [ -f "tests/fuzz/$t.dict" ]; then
		set -- "$@" -dict="tests/fuzz/$t.dict"
	fi
	echo "== fuzz_$t for ${secs}s (log: $log)"
	if "$dir/fuzz_$t" "$@" "$work" "tests/fuzz/corpus/$t" >"$log" 2>&1
	then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
		cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
		corp=$(grep -o 'corp: [0-9]*' "$log" | tail -n 1)
		echo "fuzz_$t: ${runs:-?} inputs, ${cov:-cov: ?}," \
		    "${corp:-corp: ?}, nothing found"
	else
		echo "fuzz_$t: FAILED; the input is in $art/:"
		ls "$art"
		grep -A 40 -m 1 'ERROR\|==[0-9]*==\|runtime error\|fuzz_' \
		    "$log" | head -n 60 || tail -n 60 "$log"
		failed="$failed $t"
	fi
done
if [ -n "$failed" ]; then
	echo "make fuzz: found something in:$failed"
	echo "Add each input to tests/fuzz/regress/TARGET/ (replayed by make" \
	    "check), then fix it."
	exit 1
fi
echo "make fuzz: $ntargets targets ran ${secs}s each, nothing found"
