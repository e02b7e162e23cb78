#!/usr/bin/env bash
# `make demo`: runs every runbook against the sandbox (already up) and keeps
# each run's output under reports/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
export ANSIBLE_CONFIG=$PWD/ansible.cfg PATH=$PWD/.venv/bin:$PATH ANSIBLE_NOCOLOR=1
out=reports/demo
mkdir -p "$out"
summary=$out/summary.txt
: > "$summary"

# Order: preflight first, then read-only checks, then the runbooks that act.
runbooks=(preflight)
for p in playbooks/*.yml; do
  name=$(basename "$p" .yml)
  [ "$name" = preflight ] || runbooks+=("$name")
done

# The runbooks that refuse to guess what an operator must say: the sandbox's
# answers. db 3 of the sandbox Redis is a cache nothing else uses; the queues
# are the seed runbooks' (read-only, zeros when empty); one worker is the
# sandbox's normal count, so the demo leaves it as it was.
declare -A extra=(
  [flush_cache]='{"flush_cache_db": 3}'
  [queues]='{"queues_watch": [{"library": "bullmq", "queues": ["campaign-emails", "ai-insights"]}, {"library": "rq", "queues": ["default"]}]}'
  [scale_workers]='{"worker_scale_count": 1}'
)

status=0
for name in "${runbooks[@]}"; do
  log=$out/$name.log
  printf 'demo: %-20s ' "$name"
  if ansible-playbook "playbooks/$name.yml" -i inventories/sandbox -e "${extra[$name]:-{\}}" > "$log" 2>&1; then
    result=ok
  else
    result="FAILED (see $log)"
    status=1
  fi
  echo "$result"
  printf '%-20s %s\n' "$name" "$result" >> "$summary"
done
echo "demo: report in $out/ (summary.txt and one log per runbook)"
exit $status
