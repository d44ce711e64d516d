#!/usr/bin/env bash
# Debian packages and accounts the test suite needs: real SMTP peers and tools.
# Idempotent; needs root (CI runs as root). Postfix is installed without configuring the
# system's own mail service: tests start private smtp-sink / postfix instances themselves.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "run as root to install test dependencies" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in postfix swaks nsd unbound nftables systemd testssl.sh faketime libmagic1 zip clamav-daemon clamav-freshclam redis-server rsyslog slapd ldap-utils; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  # slapd is installed without a database of its own: tests start private slapd instances
  # with a cn=config they build in a temporary folder.
  echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
  # The tests start private instances on loopback ports; no package may start its system
  # service (nsd on port 53, postfix on 25) while it is installed.
  policy=/usr/sbin/policy-rc.d
  [ -e "$policy" ] || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; trap 'rm -f "$policy"' EXIT; }
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The browser tests drive Debian's chromium headless (Playwright cannot download a browser
# build here); without recommends, so none of the desktop's extras come along.
if ! dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "install ok installed"; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
# Nothing of the system's own mail service may hold port 25 or run during tests.
if command -v postfix >/dev/null && postfix status >/dev/null 2>&1; then postfix stop || true; fi
# Nor the system's clamd or freshclam daemon: tests start a private clamd with a database they build.
for svc in clamav-daemon clamav-freshclam rsyslog slapd; do service "$svc" stop >/dev/null 2>&1 || true; done
# The service user must be able to read the interpreter: a Python installed under /root (as
# on build machines) is made traversable, no more (o+x lists nothing).
prefix=$(python3 -c 'import sys; print(sys.base_prefix)')
case "$prefix" in /root/*) chmod o+x /root ;; esac
id edgeward >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin edgeward
