#!/usr/bin/env bash
# Prepares a fresh Debian/Ubuntu machine for runbook.ops: Debian packages the
# sandbox and fleet need, a pinned Python venv in .venv, and the link that lets
# Ansible resolve runbook.ops to this checkout. Safe to run again: each step is
# skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# Debian packages: servers for the sandbox, podman and debootstrap for the
# fleet (netavark calls iptables). apt never starts services here (policy-rc.d), and we don't either.
apt_packages=(postgresql postgresql-contrib redis-server redis-tools nginx openssl
  openssh-client podman runc netavark aardvark-dns iptables debootstrap uidmap iproute2 python3-venv curl
  ca-certificates)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python venv, reinstalled only when requirements.txt changes.
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python requirements into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi

# Node packages of the queue tests (real BullMQ and Bull jobs): npm ci into the git-ignored
# tests/queues/node/node_modules, again only when package-lock.json changes.
if ! command -v npm >/dev/null 2>&1; then
  echo "setup: installing Debian packages: nodejs npm"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
node_stamp=tests/queues/node/node_modules/.package-lock.sha256
node_want=$(sha256sum tests/queues/node/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$node_stamp" 2>/dev/null)" != "$node_want" ]; then
  echo "setup: installing the queue tests' npm packages (tests/queues/node)"
  (cd tests/queues/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$node_want" > "$node_stamp"
fi

# runbook.ops resolves to this checkout (see collections_path in ansible.cfg).
mkdir -p .collections/ansible_collections/runbook
ln -sfn "$root" .collections/ansible_collections/runbook/ops

echo "setup: ready (.venv, .collections)"
