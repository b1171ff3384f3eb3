-- Shared by push.lua and healthz.lua: per-thread counters and one machine-readable line.
-- wrk runs setup() in its main Lua state and everything else in one state per thread.
--
-- Per-response checks (status and body in Lua) only with BENCH_BODIES=1. Defining wrk's
-- response() hook makes wrk build a headers table and a body string for every response, and
-- LuaJIT's collector then pauses the thread while it walks a heap holding the thread's share of
-- the push file (hundreds of MB in a fresh-push run): 30-130 ms stalls in which that thread's 32
-- connections wait, so p99 measured the load generator (docs/performance-history.md, "The load generator's
-- own stalls"). Without the hook, wrk still counts 4xx/5xx answers itself (status_err).
bodies = os.getenv("BENCH_BODIES") == "1"
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

non200 = 0
first_bad = nil

function count_status(status, body)
  if status ~= 200 then
    non200 = non200 + 1
    if first_bad == nil then
      first_bad = tostring(status) .. " " .. string.sub(body or "", 1, 160)
    end
  end
end

-- extra(thread) returns "key=value ..." added to the summary line
function report(extra)
  local bad, wraps, firsts = 0, 0, {}
  local more = ""
  for _, t in ipairs(threads) do
    bad = bad + (t:get("non200") or 0)
    local fb = t:get("first_bad")
    if fb then table.insert(firsts, fb) end
  end
  if extra then more = extra(threads) end
  return bad, firsts, more
end

function print_summary(summary, latency, extra)
  local bad, firsts, more = report(extra)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "BENCH requests=%d duration_s=%.3f rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d non200=%d connect_err=%d read_err=%d write_err=%d timeouts=%d status_err=%d bodies=%d %s\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    bad, e.connect, e.read, e.write, e.timeout, e.status, bodies and 1 or 0, more))
  for _, f in ipairs(firsts) do
    io.write("BENCH first non-200: " .. f .. "\n")
  end
end
