#!/usr/bin/env bash
# Makes this machine ready for `npm test`: installs the tools the end-to-end tests drive when
# they are missing (Debian packages, after `apt-get update`) and starts the local services they
# talk to. Idempotent and quick when everything is there. When it cannot install (not root, no
# apt-get), it stops at once and prints the command that would.
set -euo pipefail

# command → Debian package
tools=(
  "go golang-go"
  "prometheus prometheus"
  "redis-server redis-server"
  "redis-cli redis-tools"
  "curl curl"
  "python3 python3"
  "chromium chromium"
  "tini tini"
)

missing=()
for entry in "${tools[@]}"; do
  cmd=${entry%% *}
  pkg=${entry#* }
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
python3 -c 'import requests' >/dev/null 2>&1 || missing+=(python3-requests)

if [ ${#missing[@]} -gt 0 ]; then
  install="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "test/setup.sh: the tests need: ${missing[*]}" >&2
    echo "install them with: sudo sh -c '$install'" >&2
    exit 1
  fi
  echo "test/setup.sh: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Redis on 127.0.0.1:6379 (budgets across replicas). Tests use their own key prefixes.
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  dir=${TMPDIR:-/tmp}/stoka-test-redis
  mkdir -p "$dir"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir "$dir" >/dev/null
  for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { echo "test/setup.sh: redis-server did not start" >&2; exit 1; }
fi

# PostgreSQL on 127.0.0.1:5432 (the shared payment store), trust auth for the local user
# postgres. Each test run creates its own database and drops it; nothing else is touched.
pg_answers() { pg_isready -h 127.0.0.1 -p 5432 -q >/dev/null 2>&1; }
if ! command -v pg_isready >/dev/null 2>&1 || ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  install="apt-get update && apt-get install -y --no-install-recommends postgresql"
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "test/setup.sh: the tests need PostgreSQL; install it with: sudo sh -c '$install'" >&2
    exit 1
  fi
  echo "test/setup.sh: installing postgresql" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  # A fresh cluster asks for passwords over TCP: the tests connect as postgres without one,
  # from this machine only.
  for hba in /etc/postgresql/*/main/pg_hba.conf; do
    grep -q '^host all postgres 127.0.0.1/32 trust' "$hba" ||
      sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
  done
  # The package may have started the cluster already: it reads the new rule on a reload.
  for v in /etc/postgresql/*/; do
    pg_ctlcluster --skip-systemctl-redirect "$(basename "$v")" main reload >/dev/null 2>&1 || true
  done
fi
if ! pg_answers; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
  for _ in $(seq 1 100); do pg_answers && break; sleep 0.1; done
  pg_answers || {
    echo "test/setup.sh: PostgreSQL does not answer on 127.0.0.1:5432; start it with: pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start" >&2
    exit 1
  }
fi
