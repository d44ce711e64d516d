#!/usr/bin/env bash
# Installs the Debian packages that bench/smtp_relay_bench.py needs: postfix, which brings
# postfix, postconf, smtp-source and smtp-sink. Idempotent: does nothing when all are present.
#
# The system's own mail service is neither configured nor started: the benchmark runs a private
# Postfix instance from its own config_directory, so debconf gets "No configuration" (no
# /etc/postfix/main.cf, nothing listening on port 25), and a temporary policy-rc.d refuses
# service starts during the install (there is no systemd here for the postinst to talk to).
# Run as root.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

missing=()
for bin in postfix postconf smtp-source smtp-sink; do
  if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$bin" ]; then
    missing+=("$bin")
  fi
done
if [ "${#missing[@]}" -eq 0 ] && dpkg-query -W -f='${Status}' postfix 2>/dev/null | grep -q "ok installed"; then
  echo "bench-deps: postfix $(postconf -d -h mail_version) already installed"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "bench-deps: run as root (apt-get install postfix)" >&2
  exit 1
fi

# Answer debconf before the package asks: no system mail configuration.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

# Refuse service starts from maintainer scripts while installing, unless a policy is already set.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  own_policy=1
fi
cleanup() {
  if [ "$own_policy" -eq 1 ]; then
    rm -f "$policy"
  fi
}
trap cleanup EXIT

apt-get update -qq
apt-get install -y -qq --no-install-recommends postfix >/dev/null

# The private instance runs its daemons as postfix and its setgid commands as postdrop; the
# package's postinst creates both.
getent passwd postfix >/dev/null || { echo "bench-deps: user postfix missing after install" >&2; exit 1; }
getent group postdrop >/dev/null || { echo "bench-deps: group postdrop missing after install" >&2; exit 1; }

echo "bench-deps: installed postfix $(postconf -d -h mail_version)"
