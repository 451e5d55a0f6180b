#!/usr/bin/env bash
# make bench: every figure the README reports, measured side by side in one
# run on one private PostgreSQL cluster (fsync on), so ratios compare like
# with like on a noisy 2-core machine. Output: var/bench/<name>.txt and a
# summary at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
QINBA_NEED_CHROMIUM= bash scripts/ensure-test-deps.sh
out=var/bench
mkdir -p "$out"
go build -o bin/qinba ./cmd/qinba
dir=var/pgbench
url=$(bin/qinba devdb start --dir "$dir")
trap 'bin/qinba devdb stop --dir "$dir" >/dev/null 2>&1 || true' EXIT
export TEST_DATABASE_URL="$url"
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
summary=()
note() { summary+=("$1"); echo "$1"; }
# BENCH_ONLY=settle,roster runs only those (engine, roster, settle, stream, sfu).
want() { [ -z "${BENCH_ONLY:-}" ] || [[ ",$BENCH_ONLY," == *",$1,"* ]]; }

if want engine; then
echo "== settlement engine: one 20-line inpatient bill"
go test -run '^$' -bench BenchmarkSettleInpatient20Lines -benchmem -count 5 ./settlement | tee "$out/engine.txt"
note "engine: $(awk '/^BenchmarkSettleInpatient20Lines/ {ns+=$3; n++; a=$7} END {printf "%.1f us/op (mean of %d), %s allocs/op", ns/n/1000, n, a}' "$out/engine.txt")"

fi
if want roster; then
echo "== roster import vs raw COPY (full county: 27,782 households, 82,590 persons)"
go test -run '^$' -bench BenchmarkRosterImport -benchtime 3x ./household | tee "$out/roster.txt"
note "roster: $(awk '/^BenchmarkRosterImport/ {for (i=1;i<=NF;i++) {if ($(i+1)=="x-raw-copy") r=$i; if ($(i+1)=="import-ms") m=$i; if ($(i+1)=="raw-copy-ms") c=$i}} END {printf "import %s ms, raw COPY %s ms, ratio %sx (target <= 2)", m, c, r}' "$out/roster.txt")"

fi
if want settle; then
echo "== pgbench TPC-B (scale 10, 8 clients, 2 threads) and settlement service (8 at once), alternating, on the same cluster"
# Five rounds, each pgbench for 15 s then 10,000 settlements: the machine's
# other load drifts (a round's CPU per operation moves by a third on these
# machines), so the two are interleaved and the ratio is taken per round;
# the summary gives every round and the median.
"$pgbin/psql" -X -q "$url" -c 'DROP DATABASE IF EXISTS pgbench' -c 'CREATE DATABASE pgbench'
pgurl="${url%/*}/pgbench?sslmode=disable"
"$pgbin/pgbench" -q -i -s 10 "$pgurl" >/dev/null 2>&1
: >"$out/pgbench.txt"
: >"$out/settle-service.txt"
ratios=()
rounds=""
# Each measurement starts from a checkpoint (no pending dirty pages, the
# same full-page-write regime) and pgbench's dead rows are vacuumed after
# it, so that neither run pays for the other's leftovers.
checkpoint() { "$pgbin/psql" -X -q "$url" -c CHECKPOINT; }
for round in 1 2 3 4 5; do
  checkpoint
  "$pgbin/pgbench" -c 8 -j 2 -T 15 "$pgurl" 2>&1 | tee -a "$out/pgbench.txt" | grep -E '^(tps|latency average)'
  "$pgbin/psql" -X -q "$pgurl" -c 'VACUUM (ANALYZE) pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history'
  checkpoint
  tps=$(awk '/^tps = / {print int($3)}' "$out/pgbench.txt" | tail -1)
  go test -run '^$' -bench BenchmarkSettleService -benchtime 10000x -count 1 ./settlement | tee -a "$out/settle-service.txt" | grep '^Benchmark'
  sps=$(awk '/^BenchmarkSettleService/ {for (i=1;i<=NF;i++) if ($(i+1)=="settlements/s") print int($i)}' "$out/settle-service.txt" | tail -1)
  r=$(awk -v a="${sps:-0}" -v b="${tps:-1}" 'BEGIN {printf "%.2f", a/b}')
  ratios+=("$r")
  rounds+="${rounds:+; }${sps:-?}/s vs ${tps:-?} tps = $r"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | sed -n 3p)
note "settlement service vs pgbench, per round: $rounds; median ratio $median (target >= 0.5)"

fi
if want stream; then
echo "== referral stream: state change to arrival, 200 SSE subscribers"
go test -run '^$' -bench BenchmarkStreamLatency -benchtime 200x ./referral | tee "$out/stream.txt"
note "referral stream: $(awk '/^BenchmarkStreamLatency/ {for (i=1;i<=NF;i++) {if ($(i+1) ~ /p50/) a=$i" "$(i+1); if ($(i+1) ~ /p99/) b=$i" "$(i+1)}} END {print a", "b" (target p99 < 100 ms)"}' "$out/stream.txt")"

fi
if want sfu; then
echo "== consult SFU: concurrent three-party consults, 500 kbps video + audio each, on loopback"
QINBA_SFU_BENCH=1 QINBA_SFU_BENCH_STEPS="${QINBA_SFU_BENCH_STEPS:-10,20,30,40,50,60}" \
  go test ./consult -run '^TestSFUCapacity$' -count=1 -v -timeout 30m | tee "$out/sfu.txt"
best=$(sed -n 's/.*largest step with < 1% loss: \([0-9]*\) consults.*/\1/p' "$out/sfu.txt" | tail -1)
row() { awk -v b="$1" '$2 == b && $3 ~ /^[0-9]+$/ {printf "forwarding delay in the server p50/p99 %s/%s ms (target p99 < 5); end to end video %s/%s ms, direct client pair %s/%s ms; server %s us/packet", $6, $7, $8, $9, $12, $13, $17}' "$out/sfu.txt" | tail -1; }
note "consult SFU: ${best:-?} consults with < 1% loss (target 50); at 50: $(row 50); see $out/sfu.txt"

fi
echo
echo "== summary ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
