-- wrk script for every wrk run of the bench: requests are built once, in init(), then cycled.
--
--   wrk ... -s bench/lua/load.lua <url> -- <mode> <api key> <batch size> <users> <timestamp> <rate/thread>
--
-- mode: "single" POSTs one activity per request to the URL's path (a ring of <users> bodies, one user
-- each, so the events spread over the topic's partitions); "batch" POSTs {"activities": [...]} with
-- <batch size> activities; "get" GETs the URL (the generator check against /health). <rate/thread> > 0 paces each wrk thread to that many requests per second
-- (open loop, with LuaJIT's ffi clock), 0 sends as fast as the connections allow (closed loop).
-- done() prints one line "BENCH_JSON {...}" that the harness parses: counts, errors, latency percentiles
-- and the count of each HTTP status answered.

local threads = {}
local requests_ring = {}
local ring_size = 0
local next_index = 1
local interval_ms = 0
local next_slot = nil
local now_ms = nil

local function activity(user, n, timestamp)
  return string.format(
    '{"userId":"bench-user-%d","action":"%s","timestamp":"%s",'
      .. '"metadata":{"path":"/pricing","referrer":"newsletter","n":%d}}',
    user, ({ "page_view", "click", "login", "purchase", "logout" })[(n % 5) + 1], timestamp, n)
end

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local mode, key, batch_size, users, timestamp, rate =
    args[1], args[2], tonumber(args[3]), tonumber(args[4]), args[5], tonumber(args[6] or "0")
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. key,
  }
  local path = wrk.path
  ring_size = users
  for u = 0, users - 1 do
    local body
    if mode == "get" then
      requests_ring[u + 1] = wrk.format("GET", path, headers)
    elseif mode == "batch" then
      local items = {}
      for i = 0, batch_size - 1 do
        items[#items + 1] = activity((u * batch_size + i) % users, u * batch_size + i, timestamp)
      end
      body = '{"activities":[' .. table.concat(items, ",") .. "]}"
    else
      body = activity(u, u, timestamp)
    end
    if body then
      requests_ring[u + 1] = wrk.format("POST", path, headers, body)
    end
  end
  -- Every answer's status, counted per thread (read back in done()): 202s and 503s are told apart.
  statuses = {}
  response = function(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
  end
  -- Spread the threads over the ring so they do not all start with the same user.
  next_index = (math.random(0, ring_size - 1)) + 1
  if rate > 0 then
    local ffi = require("ffi")
    ffi.cdef([[
      typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
      int clock_gettime(int clock_id, bench_timespec *tp);
    ]])
    local ts = ffi.new("bench_timespec")
    now_ms = function()
      ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
      return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
    end
    interval_ms = 1000 / rate
    -- wrk looks for a global delay() once, after init(): define it only when pacing, so that the
    -- closed-loop runs do not go through a timer for every request.
    delay = function()
      local now = now_ms()
      -- Each request takes the next slot of the thread's schedule; a schedule that fell far behind
      -- (a stall) restarts from now rather than bursting to catch up.
      if next_slot == nil or next_slot < now - 250 then
        next_slot = now
      end
      local wait = next_slot - now
      next_slot = next_slot + interval_ms
      return wait > 0 and math.floor(wait) or 0
    end
  end
end

function request()
  local r = requests_ring[next_index]
  next_index = next_index % ring_size + 1
  return r
end

function done(summary, latency, requests)
  local function p(q)
    return latency:percentile(q)
  end
  local totals, counts = {}, {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses") or {}) do
      totals[status] = (totals[status] or 0) + count
    end
  end
  for status, count in pairs(totals) do
    counts[#counts + 1] = string.format('"%d":%d', status, count)
  end
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"min":%d,"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d},'
      .. '"statuses":{%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout,
    latency.min, latency.mean, p(50), p(90), p(99), p(99.9), latency.max, table.concat(counts, ",")))
end
