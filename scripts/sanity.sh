#!/usr/bin/env bash
# ansible-test sanity on a real copy of the collection (ansible-test resolves
# symlinks, so it needs a true ansible_collections/runbook/ops path), in its
# own venv. Without docker, ansible-test fetches a get-pip bootstrap from the
# internet; we give it a local one built from a pip wheel taken from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=$root/.venv
dest=$root/build/sanity/ansible_collections/runbook/ops

cache=$HOME/.ansible/test/cache
if [ ! -f "$cache/get_pip_24_2.py" ]; then
  mkdir -p "$cache/pip-wheel"
  "$venv/bin/pip" download -q --no-deps --only-binary=:all: -d "$cache/pip-wheel" pip==24.2
  cat > "$cache/get_pip_24_2.py" <<PY
"""Offline stand-in for get-pip.py: installs pip from a wheel kept beside it."""
import glob
import sys

sys.path.insert(0, glob.glob("$cache/pip-wheel/pip-24.2-*.whl")[0])
from pip._internal.cli.main import main  # noqa: E402

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--upgrade", "--force-reinstall", *args]))
PY
fi

# The files a release ships, plus the unit tests; sandbox tooling and the
# pytest integration suite are not part of the collection (build_ignore).
rm -rf "$dest"
mkdir -p "$dest"
git ls-files -co --exclude-standard \
  | grep -vE '^(sandbox|scripts|\.ci|tests/integration|tests/molecule|tests/queues|tests/unit/sandbox|inventories/(sandbox|fleet))/' \
  | tar -cf - -T - | tar -xf - -C "$dest"
cd "$dest"
git init -q . && git add -A >/dev/null
# pip's per-index notes drown the results; keep everything else
PATH=$venv/bin:$PATH "$venv/bin/ansible-test" sanity --venv --python 3.11 --color no "$@" 2>&1 \
  | grep --line-buffered -vE '^(WARNING: Location|Looking in (indexes|links))'
