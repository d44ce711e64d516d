#!/usr/bin/env bash
# Debian packages the benchmarks under bench/ need, beyond the test suite's:
#   postfix (postfix, postconf, smtp-source, smtp-sink): the relay peer and the common sink;
#   opendkim, opendmarc, postfix-policyd-spf-python: the anti-spam peer's milters and SPF policy;
#   nsd, unbound: the local authoritative DNS and the resolver both stacks ask;
#   iproute2: `ip netns`, the private network namespace the anti-spam benchmark runs in;
#   nftables, lynis: scripts/harden-lynis.sh (Lynis's index around harden apply);
#   amavisd-new, clamav-daemon: the anti-virus peer and the clamd both stacks share, with
#   p7zip-full, cabextract, arj, lzop: decoders amavis uses for archives it meets.
# Idempotent; needs root. The benchmarks start private instances of all of these; no package
# may configure or start its system service while it is installed (postfix gets "No
# configuration", a temporary policy-rc.d refuses service starts), and anything a maintainer
# script started anyway is stopped afterwards.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "install-bench-deps: run as root" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in postfix opendkim opendmarc postfix-policyd-spf-python nsd unbound iproute2 slapd ldap-utils \
    nftables lynis amavisd-new clamav-daemon p7zip-full cabextract arj lzop; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  # opendmarc asks whether to set up a history database with dbconfig; the benchmark keeps none.
  echo "opendmarc opendmarc/dbconfig-install boolean false" | debconf-set-selections
  # bench/directory_bench.py starts its own slapd; the package must not configure one.
  echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
  policy=/usr/sbin/policy-rc.d
  [ -e "$policy" ] || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; trap 'rm -f "$policy"' EXIT; }
  apt-get update -qq -o DPkg::Lock::Timeout=600
  apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${need[@]}" >/dev/null
fi
# Stop whatever of the system's own services runs despite the policy (a machine that had them
# before); the benchmarks start their own instances on loopback or inside a namespace.
if command -v postfix >/dev/null && postfix status >/dev/null 2>&1; then postfix stop || true; fi
for svc in opendkim opendmarc nsd unbound amavis clamav-daemon clamav-freshclam; do
  pidfile=""
  case "$svc" in
    opendkim) pidfile=/run/opendkim/opendkim.pid ;;
    opendmarc) pidfile=/run/opendmarc/opendmarc.pid ;;
    nsd) pidfile=/run/nsd/nsd.pid ;;
    unbound) pidfile=/run/unbound.pid ;;
    amavis) pidfile=/run/amavis/amavisd.pid ;;
    clamav-daemon) pidfile=/run/clamav/clamd.pid ;;
    clamav-freshclam) pidfile=/run/clamav/freshclam.pid ;;
  esac
  if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")" || true
    echo "install-bench-deps: stopped the system's $svc"
  fi
done
getent passwd postfix >/dev/null || { echo "install-bench-deps: user postfix missing" >&2; exit 1; }
getent passwd amavis >/dev/null || { echo "install-bench-deps: user amavis missing" >&2; exit 1; }
for bin in postfix smtp-source smtp-sink opendkim opendmarc policyd-spf nsd unbound ip amavisd clamd; do
  command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || [ -x "/usr/bin/$bin" ] \
    || { echo "install-bench-deps: $bin missing after install" >&2; exit 1; }
done
echo "install-bench-deps: ok (postfix $(postconf -d -h mail_version))"
