#!/usr/bin/env bash
# Makes this machine ready for `npm run bench`: installs the peers and the load generator it
# drives when they are missing (Debian packages, after `apt-get update`), like test/setup.sh
# does for the tests. When it cannot install (not root, no apt-get), it stops at once and
# prints the command that would.
set -euo pipefail

# command → Debian package
tools=(
  "wrk wrk"
  "tinyproxy tinyproxy"
  "mitmdump mitmproxy"
  "curl curl"
  "valgrind valgrind"
  "callgrind_control valgrind"
)

missing=()
for entry in "${tools[@]}"; do
  cmd=${entry%% *}
  pkg=${entry#* }
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  install="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "bench/setup.sh: the bench needs: ${missing[*]}" >&2
    echo "install them with: sudo sh -c '$install'" >&2
    exit 1
  fi
  echo "bench/setup.sh: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

