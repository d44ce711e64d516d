#!/usr/bin/env bash
# Lynis's hardening index before and after `edgeward harden apply --template edge`, inside a
# disposable network namespace: only the namespace's ruleset and net.* settings change, the
# sysctl drop-in goes to a scratch root, and a rollback runs at the end. Prints both indexes
# and the Lynis tests whose result changed. Needs root, lynis and nftables.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
export PYTHONPATH=$PWD/src
ns=ewlynis$$
work=$(mktemp -d)
trap 'ip netns exec $ns true 2>/dev/null && ip netns del $ns; rm -rf "$work"' EXIT
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
.venv/bin/edgeward init --dir "$work/gw" --hostname mx.example.test --listen 127.0.0.1:2525 \
  --accept-domain example.test >/dev/null
mkdir -p "$work/root"
in_ns() { ip netns exec "$ns" "$@"; }
in_ns lynis audit system --quick --no-colors --report-file "$work/before.dat" --log-file "$work/before.log" >/dev/null
in_ns .venv/bin/edgeward harden apply -c "$work/gw/edgeward.toml" --template edge --root "$work/root" --yes
in_ns lynis audit system --quick --no-colors --report-file "$work/after.dat" --log-file "$work/after.log" >/dev/null
in_ns .venv/bin/edgeward harden rollback -c "$work/gw/edgeward.toml"
echo "hardening index before: $(grep '^hardening_index=' "$work/before.dat" | cut -d= -f2)"
echo "hardening index after:  $(grep '^hardening_index=' "$work/after.dat" | cut -d= -f2)"
echo "Lynis findings gone after apply:"
comm -23 <(grep -E '^(warning|suggestion)\[\]=' "$work/before.dat" | sort -u) \
         <(grep -E '^(warning|suggestion)\[\]=' "$work/after.dat" | sort -u) || true
echo "sysctl keys Lynis still finds different:"
grep 'has a different value than expected' "$work/after.log" | sed 's/.*sysctl key \([^ ]*\).*/\1/' | sort | tr '\n' ' '
echo
