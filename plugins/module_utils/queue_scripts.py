# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Lua scripts that change queues the way the libraries' own scripts do, atomically (one EVAL each).

Each takes the job ids the module planned (and listed in check mode) and acts only on those still in
the expected state, returning the ones it touched: a job a worker moved in between is left alone.

Sources followed (MIT-licensed libraries, read in node_modules and site-packages):
- BULLMQ_RETRY: bullmq 6.7 reprocessJob-9.lua (Job.retry('failed')): HDEL finishedOn, processedOn,
  failedReason (and attemptsMade `atm` only when asked, as resetAttemptsMade); back to wait with
  LPUSH (RPUSH for lifo), or to prioritized with the priority counter; the parent's dependency
  restored (moveChildBackToParentDependencies); a `waiting` event; the marker unless paused or maxed.
- BULLMQ_REMOVE: cleanJobsInSet-3.lua for `failed` (removeJob: the job's keys, its deduplication key).
- BULLMQ_PAUSE: pause-7.lua. Since BullMQ 5 pausing only sets meta.paused (jobs stay in wait);
  resuming also moves a legacy `paused` list back to wait.
- BULL_RETRY / BULL_REMOVE / BULL_PAUSE: bull 4 reprocessJob-6.lua, cleanJobsInSet-3.lua, pause-5.lua
  (pausing renames wait to paused and sets meta-paused).
- RQ_REQUEUE: rq 3.0 FailedJobRegistry.requeue(): ZREM, started_at/ended_at cleared, status queued,
  enqueued_at now, RPUSH onto the origin queue.
- RQ_DELETE: FailedJobRegistry.remove(job, delete_job=True) -> Job.delete(): the job hash, its
  dependents and dependencies sets, its results stream and executions.
- SIDEKIQ_PUSH: Sidekiq's SortedEntry#retry -> Client.push: remove from the set, SADD queues, LPUSH
  queue:<name> (the payload itself is prepared in Python: retry_count - 1, enqueued_at now).

The scripts that act on job ids start with _JOBS: a loop over the ids (eachJob) and the two checks
the libraries' scripts share (the lifo push, a failed-set score against the cutoff).
"""
from __future__ import annotations

_JOBS = r"""
local rcall = redis.call
-- apply(id) for each job id in ARGV[first], ARGV[first + 1], ...; returns the ids it returned true for
local function eachJob(first, apply)
  local done = {}
  for i = first, #ARGV do
    if apply(ARGV[i]) then done[#done + 1] = ARGV[i] end
  end
  return done
end
-- LPUSH, or RPUSH for a job added with opts.lifo (BullMQ's and Bull's addJob)
local function pushCommand(jobKey)
  local ok, opts = pcall(cjson.decode, rcall("HGET", jobKey, "opts") or "{}")
  if ok and type(opts) == "table" and opts["lifo"] then return "RPUSH" end
  return "LPUSH"
end
-- whether id is in the sorted set with a score (finishedOn) at or below the cutoff
local function scoredBy(set, id, cutoff)
  local score = rcall("ZSCORE", set, id)
  return score and tonumber(score) <= tonumber(cutoff)
end
"""

BULLMQ_RETRY = _JOBS + r"""
-- KEYS: base, events, failed, wait, meta, active, marker, prioritized, pc; ARGV: reset attempts, ids...
local attrs = rcall("HMGET", KEYS[5], "paused", "concurrency")
local pausedOrMaxed = attrs[1] and true or false
if not pausedOrMaxed and attrs[2] then
  pausedOrMaxed = rcall("LLEN", KEYS[6]) >= tonumber(attrs[2])
end
local maxEvents = rcall("HGET", KEYS[5], "opts.maxLenEvents")
if not maxEvents then
  maxEvents = 10000
  rcall("HSET", KEYS[5], "opts.maxLenEvents", maxEvents)
end
local moved = eachJob(2, function(id)
  local jobKey = KEYS[1] .. id
  if rcall("EXISTS", jobKey) == 0 or rcall("ZREM", KEYS[3], id) == 0 then return false end
  if ARGV[1] == "1" then
    rcall("HDEL", jobKey, "finishedOn", "processedOn", "failedReason", "atm")
  else
    rcall("HDEL", jobKey, "finishedOn", "processedOn", "failedReason")
  end
  local priority = tonumber(rcall("HGET", jobKey, "priority")) or 0
  if priority == 0 then
    rcall(pushCommand(jobKey), KEYS[4], id)
  else
    local counter = rcall("INCR", KEYS[9])
    rcall("ZADD", KEYS[8], priority * 0x100000000 + counter % 0x100000000, id)
  end
  local parentKey = rcall("HGET", jobKey, "parentKey")
  if parentKey and rcall("EXISTS", parentKey) == 1 then
    if rcall("ZREM", parentKey .. ":unsuccessful", jobKey) == 1 or rcall("HDEL", parentKey .. ":failed", jobKey) == 1 then
      rcall("SADD", parentKey .. ":dependencies", jobKey)
    end
  end
  rcall("XADD", KEYS[2], "MAXLEN", "~", maxEvents, "*", "event", "waiting", "jobId", id, "prev", "failed")
  return true
end)
if #moved > 0 and not pausedOrMaxed then rcall("ZADD", KEYS[7], 0, "0") end
return moved
"""

BULLMQ_REMOVE = _JOBS + r"""
-- KEYS: base, events, failed; ARGV: cutoff (ms, finishedOn), ids...
local removed = eachJob(2, function(id)
  if not scoredBy(KEYS[3], id, ARGV[1]) then return false end
  local jobKey = KEYS[1] .. id
  local deid = rcall("HGET", jobKey, "deid")
  if deid then
    local dedupKey = KEYS[1] .. "de:" .. deid
    if rcall("GET", dedupKey) == id then rcall("DEL", dedupKey, KEYS[1] .. "dn:" .. deid) end
  end
  rcall("DEL", jobKey, jobKey .. ":logs", jobKey .. ":dependencies", jobKey .. ":processed",
        jobKey .. ":failed", jobKey .. ":unsuccessful")
  rcall("ZREM", KEYS[3], id)
  return true
end)
if #removed > 0 then rcall("XADD", KEYS[2], "*", "event", "cleaned", "count", #removed) end
return removed
"""

BULLMQ_PAUSE = r"""
-- KEYS: wait, paused, meta, prioritized, events, delayed, marker; ARGV: 'paused' or 'resumed'
local rcall = redis.call
if ARGV[1] == "paused" then
  rcall("HSET", KEYS[3], "paused", 1)
  rcall("DEL", KEYS[7])
else
  rcall("HDEL", KEYS[3], "paused")
  if rcall("EXISTS", KEYS[2]) == 1 then
    if rcall("EXISTS", KEYS[1]) == 0 then
      rcall("RENAME", KEYS[2], KEYS[1])
    else
      while rcall("LLEN", KEYS[2]) > 0 do
        local jobs = rcall("LRANGE", KEYS[2], 0, 6999)
        rcall("RPUSH", KEYS[1], unpack(jobs))
        rcall("LTRIM", KEYS[2], #jobs, -1)
      end
    end
  end
  if rcall("LLEN", KEYS[1]) + rcall("ZCARD", KEYS[4]) > 0 then
    rcall("ZADD", KEYS[7], 0, "0")
  else
    local first = rcall("ZRANGE", KEYS[6], 0, 0, "WITHSCORES")
    local nextTimestamp = tonumber(first[2])
    if nextTimestamp ~= nil then rcall("ZADD", KEYS[7], nextTimestamp / 0x1000, "1") end
  end
end
rcall("XADD", KEYS[5], "*", "event", ARGV[1])
return 1
"""

BULL_RETRY = _JOBS + r"""
-- KEYS: base, failed, wait, meta-paused, paused; ARGV: now (ms), ids...
local target = KEYS[3]
if rcall("EXISTS", KEYS[4]) == 1 then target = KEYS[5] end
return eachJob(2, function(id)
  local jobKey = KEYS[1] .. id
  if rcall("EXISTS", jobKey) == 0 or rcall("EXISTS", jobKey .. ":lock") == 1 or rcall("ZREM", KEYS[2], id) == 0 then
    return false
  end
  rcall("HDEL", jobKey, "finishedOn", "processedOn", "failedReason")
  rcall("HSET", jobKey, "retriedOn", ARGV[1])
  rcall(pushCommand(jobKey), target, id)
  return true
end)
"""

BULL_REMOVE = _JOBS + r"""
-- KEYS: base, failed, priority; ARGV: cutoff (ms, finishedOn), ids...
return eachJob(2, function(id)
  local jobKey = KEYS[1] .. id
  if not scoredBy(KEYS[2], id, ARGV[1]) or rcall("EXISTS", jobKey .. ":lock") == 1 then return false end
  rcall("DEL", jobKey, jobKey .. ":logs")
  rcall("ZREM", KEYS[2], id)
  rcall("ZREM", KEYS[3], id)
  return true
end)
"""

BULL_PAUSE = r"""
-- KEYS: src (wait or paused), dst, meta-paused, event channel, meta; ARGV: 'paused' or 'resumed'
local rcall = redis.call
if rcall("EXISTS", KEYS[1]) == 1 then rcall("RENAME", KEYS[1], KEYS[2]) end
if ARGV[1] == "paused" then
  rcall("SET", KEYS[3], 1)
  rcall("HSET", KEYS[5], "paused", 1)
else
  rcall("DEL", KEYS[3])
  rcall("HDEL", KEYS[5], "paused")
end
rcall("PUBLISH", KEYS[4], ARGV[1])
return 1
"""

RQ_REQUEUE = _JOBS + r"""
-- KEYS: failed registry, queue list; ARGV: now (RQ's utcformat), queue name, job key prefix, ids...
return eachJob(4, function(id)
  local jobKey = ARGV[3] .. id
  if rcall("EXISTS", jobKey) == 0 or rcall("ZREM", KEYS[1], id) == 0 then return false end
  rcall("HSET", jobKey, "status", "queued", "started_at", "", "ended_at", "", "enqueued_at", ARGV[1], "origin", ARGV[2])
  local ttl = tonumber(rcall("HGET", jobKey, "ttl") or "")
  if ttl and ttl > 0 then rcall("EXPIRE", jobKey, ttl) end
  rcall("RPUSH", KEYS[2], id)
  return true
end)
"""

RQ_DELETE = _JOBS + r"""
-- KEYS: failed registry; ARGV: rq key prefix, ids...
local p = ARGV[1]
return eachJob(2, function(id)
  if rcall("ZREM", KEYS[1], id) == 0 then return false end
  -- Job.delete(); RQ 3.0 spells the dependencies key with two colons
  rcall("DEL", p .. ":job:" .. id, p .. ":job:" .. id .. ":dependents", p .. ":job::" .. id .. ":dependencies",
        p .. ":results:" .. id, p .. ":executions:" .. id)
  return true
end)
"""

SIDEKIQ_PUSH = r"""
-- KEYS: the sorted set (retry or dead), queues set; ARGV: key prefix, then (member, queue, payload) triples
local rcall = redis.call
local moved = {}
for i = 2, #ARGV, 3 do
  if rcall("ZREM", KEYS[1], ARGV[i]) == 1 then
    rcall("SADD", KEYS[2], ARGV[i + 1])
    rcall("LPUSH", ARGV[1] .. "queue:" .. ARGV[i + 1], ARGV[i + 2])
    moved[#moved + 1] = ARGV[i]
  end
end
return moved
"""
