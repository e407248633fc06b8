#!/usr/bin/env bash
# `make bench`: benchmarks against peers measured in the same run.
# Results are printed, not asserted: targets live here, not in tests.
set -u
cd "$(dirname "$0")/../.."
echo "== idle TLS connection memory (sora-backend vs dovecot imap-login) =="
/usr/bin/python3 tests/bench/idle_tls.py "${BENCH_CONNS:-5000}"

BENCH_BIN=${BENCH_BIN:-build/bench}
echo
echo "== password verification, single thread (per scheme) =="
"$BENCH_BIN/bench-password"
echo
echo "== blob upload throughput to the local S3 server (encryption off/on) =="
/usr/bin/python3 tests/bench/blob_bench.py "$BENCH_BIN/bench-blob"
echo
echo "== LMTP deliveries per second, 8 clients, 10 KB messages (sora-backend vs dovecot lmtp, maildir) =="
/usr/bin/python3 tests/bench/lmtp_bench.py
