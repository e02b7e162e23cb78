#!/usr/bin/env bash
# The whole suite, in tiers: `fast` (lint, sanity, changelog, syntax, units) and
# `all` (fast, then one pytest run over the sandbox, the fleet and packaging,
# then molecule). Whatever this script brings up, it takes down again, unless
# RUNBOOK_KEEP_TARGETS=1.
set -euo pipefail
cd "$(dirname "$0")/.."
tier=${1:-all}
bin=$PWD/.venv/bin
export ANSIBLE_CONFIG=$PWD/ansible.cfg PATH=$bin:$PATH

step() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

step "ansible-lint (production profile)"
ansible-lint --profile production

step "changelog fragments"
antsibull-changelog lint

step "syntax check of every playbook"
for p in playbooks/*.yml; do
  ansible-playbook --syntax-check -i inventories/example "$p" >/dev/null
  echo "ok: $p"
done

step "ansible-test sanity"
bash scripts/sanity.sh

if [ "$tier" = fast ]; then
  step "unit tests"
  exec pytest -q tests/unit
fi

started=()
cleanup() {
  [ "${RUNBOOK_KEEP_TARGETS:-0}" = 1 ] && return
  for t in "${started[@]}"; do python "sandbox/$t.py" down || true; done
}
trap cleanup EXIT

step "sandbox up"
python sandbox/sandbox.py up
started+=(sandbox)
markers="not fleet"
if [ -f sandbox/fleet.py ]; then
  step "fleet up"
  python sandbox/fleet.py up
  started+=(fleet)
  markers=""
fi

step "pytest: units, sandbox, fleet, packaging"
# Two workers (CI has two cores); tests/conftest.py groups the tests that share state, so that each group runs
# on one worker, in order.
mkdir -p build
pytest -q -n "${RUNBOOK_TEST_WORKERS:-2}" --dist loadgroup ${markers:+-m "$markers"} --junitxml=build/pytest.xml \
  tests/unit tests/integration

scenarios=0
if [ -f sandbox/fleet.py ]; then
  step "molecule: every scenario on the fleet"
  make --no-print-directory molecule
  scenarios=$(ls tests/molecule/*/molecule.yml | wc -l)
fi

# One closing line for the whole suite (pytest's own line scrolled away
# above molecule's output); set -e got us here only if everything passed.
python - "$scenarios" <<'PY'
import sys
import xml.etree.ElementTree as ET

suite = ET.parse("build/pytest.xml").getroot().find("testsuite")
tests, bad = int(suite.get("tests")), int(suite.get("failures")) + int(suite.get("errors"))
skipped = int(suite.get("skipped"))
passed = tests - bad - skipped + int(sys.argv[1])
print(f"\nsuite: {passed} passed, {bad} failed, {skipped} skipped")
PY
