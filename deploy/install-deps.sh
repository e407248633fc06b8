#!/usr/bin/env bash
# Installs every Debian and npm dependency of Sora-C, idempotently.
# Safe to run repeatedly: it only calls apt-get when a package is missing and
# only runs npm when the pinned test S3 server is not installed yet.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)

build_pkgs=(build-essential pkg-config libssl-dev libuv1-dev libpq-dev libcjson-dev
            libinih-dev libsodium-dev libcrypt-dev libcurl4-openssl-dev
            libmicrohttpd-dev libcmocka-dev clang libclang-rt-14-dev)
test_pkgs=(postgresql postgresql-contrib python3-pytest python3-boto3 haproxy swaks
           sieve-connect isync curl openssl postfix dovecot-imapd dovecot-pop3d
           dovecot-lmtpd dovecot-managesieved dovecot-sieve fetchmail procps psmisc
           systemd)
# systemd: only for `systemd-analyze verify` on deploy/systemd/*.service in
# the tests; installing it in a container starts nothing.

missing=()
for p in "${build_pkgs[@]}" "${test_pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: need root to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts the packaged daemons; tests run private instances instead.
    for svc in postgresql dovecot postfix haproxy; do
        (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || true
        (service "$svc" stop >/dev/null 2>&1) || true
    done
fi

# The SigV4-verifying S3 server used by the integration tests (pinned in
# tests/integration/s3/package.json + package-lock.json).
s3dir="$here/tests/integration/s3"
if [ -f "$s3dir/package.json" ] && [ ! -d "$s3dir/node_modules/@20minutes/s3rver" ]; then
    if ! command -v npm >/dev/null; then
        echo "install-deps: npm is required (Node.js 20+) for the test S3 server" >&2
        exit 1
    fi
    echo "install-deps: installing test S3 server (npm)"
    (cd "$s3dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
exit 0
