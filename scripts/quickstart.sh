#!/usr/bin/env bash
# Quick start: install Edgeward into .venv, write a configuration under ./demo for the domain
# example.test, and run the gateway in the foreground on 127.0.0.1:2525. Mail for example.test
# lands as .eml files in ./demo/drop. Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
if [ "$(id -u)" = 0 ] && ! id edgeward >/dev/null 2>&1; then
  # Started as root, the gateway runs as this unprivileged user once its port is bound.
  useradd --system --no-create-home --shell /usr/sbin/nologin edgeward
fi
if [ ! -f demo/edgeward.toml ]; then
  .venv/bin/edgeward init --dir demo --hostname mx.example.test --listen 127.0.0.1:2525 \
    --accept-domain example.test --relay-from 127.0.0.1/32
fi
if [ "$(id -u)" = 0 ]; then chmod 755 demo; fi
exec .venv/bin/edgeward serve --config demo/edgeward.toml
