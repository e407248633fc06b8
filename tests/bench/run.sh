#!/usr/bin/env bash
# `make bench`: benchmarks against peers measured in the same run.
# Results are printed, not asserted: targets live here, not in tests.
# BENCH_QUICK=1: a smaller run (fewer connections, one LMTP repetition of a
# few scenarios) for checking that everything starts; the numbers in
# docs/lmtp.md come from the full run.
# The LMTP table is also written to $BENCH_BIN/lmtp-results.md, the IMAP
# table (tests/bench/imap_bench.py, numbers in docs/imap.md) to
# $BENCH_BIN/imap-results.md, the POP3 table (tests/bench/pop3_bench.py,
# numbers in docs/pop3.md) to $BENCH_BIN/pop3-results.md, the proxy table
# (tests/bench/proxy_bench.py, numbers in docs/proxy.md) to
# $BENCH_BIN/proxy-results.md, the login storm (tests/bench/login_storm.py,
# numbers in docs/security.md) to $BENCH_BIN/login-storm-results.md.
set -u
cd "$(dirname "$0")/../.."
BENCH_BIN=${BENCH_BIN:-build/bench}
started=$(date +%s)
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"
# LMTP first: it is the benchmark most sensitive to what earlier ones left
# behind (files deleted just before it slow inode allocation on ext4
# without a journal and, with discard, writes on the host; docs/lmtp.md).
echo "== LMTP delivery, sora-backend vs dovecot lmtp (maildir), alternating runs =="
/usr/bin/python3 tests/bench/lmtp_bench.py --markdown "$BENCH_BIN/lmtp-results.md"
echo
echo "== idle TLS connection memory (sora-backend vs dovecot imap-login) =="
/usr/bin/python3 tests/bench/idle_tls.py "${BENCH_CONNS:-$([ -n "${BENCH_QUICK:-}" ] && echo 1000 || echo 5000)}"

echo
echo "== password verification, single thread (per scheme) =="
"$BENCH_BIN/bench-password"
echo
echo "== blob upload throughput to the local S3 server (encryption off/on) =="
/usr/bin/python3 tests/bench/blob_bench.py "$BENCH_BIN/bench-blob"
echo
echo "== IMAP, sora-backend vs dovecot imap (maildir), alternating runs =="
/usr/bin/python3 tests/bench/imap_bench.py --markdown "$BENCH_BIN/imap-results.md"
echo
echo "== POP3, sora-backend vs dovecot pop3 (maildir), alternating runs =="
/usr/bin/python3 tests/bench/pop3_bench.py --markdown "$BENCH_BIN/pop3-results.md"
echo
echo "== sora-proxy: 50 MB FETCH vs direct and HAProxy, idle TLS sessions, bcrypt login storm =="
/usr/bin/python3 tests/bench/proxy_bench.py --markdown "$BENCH_BIN/proxy-results.md"
echo
echo "== auth rate limiter: 20,000 wrong passwords from 200 addresses through two proxies =="
/usr/bin/python3 tests/bench/login_storm.py --markdown "$BENCH_BIN/login-storm-results.md"
echo
echo "== login storm against Dovecot imap-login: bcrypt accounts, default delays =="
/usr/bin/python3 tests/bench/login_storm_peer.py --markdown "$BENCH_BIN/login-storm-peer-results.md"
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); $(( $(date +%s) - started )) s in total"
