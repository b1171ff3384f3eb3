-- wrk -s scripts/bench/push.lua http://host:port -- pushes.tsv
-- pushes.tsv (from `loadgen gen`): one request per line, `path?query` TAB body, with `\n` and
-- `\\` escaped. Thread k of n takes lines k, k+n, k+2n, … so threads never send the same push;
-- each rotates through its share. A push sent again (after a wrap) is answered from mpgate's
-- dedupe memory, so the summary reports how many requests were such repeats.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local reqs = {}
local pos = 0
-- The start line. wrk runs each thread's init() on its main thread just before starting that
-- thread, and starts the clock for the run's duration only after the last one. Loading a share
-- takes a second or more, so thread 0 would be sending alone, on half the connections, while
-- thread 1 loads, and those requests would count towards a duration that had not begun: the
-- rate overstated and the latency measured at half the concurrency. The last thread's init()
-- creates this file; every thread's first request() waits for it.
local ready_path
local started = false
-- wrk calls thread 0's request() once from its main thread, before starting any thread, to check
-- that the request parses; that call must neither wait (nothing else would load) nor count.
local checked = false
wraps = 0
sent = 0
successes = 0

local function unescape(s)
  return (s:gsub("\\(.)", function(c) if c == "n" then return "\n" end return c end))
end

function init(args)
  local path = args[1] or error("usage: wrk -s push.lua URL -- pushes.tsv")
  local nthreads = tonumber(os.getenv("WRK_THREADS") or "1")
  checked = id ~= 0
  ready_path = path .. ".ready"
  if id == 0 then os.remove(ready_path) end
  -- Blocks of 8 MiB and plain finds. The per-line iterator and pattern match took 2.5 times
  -- longer (the load time is what the start line waits for). Reading the whole file at once
  -- kept all of it in every thread's heap beside the thread's share: with 800,000 pushes wrk
  -- then sent 32 requests per run that the server's HTTP layer refused as malformed (no
  -- mpgate log line), which 8 MiB blocks do not.
  local f = assert(io.open(path, "rb"))
  local find, sub = string.find, string.sub
  local headers = { ["Content-Type"] = "text/xml" }
  local n = 0
  local function take(data, at, nl)
    if n % nthreads == id then
      local tab = find(data, "\t", at, true)
      if tab and tab < nl then
        local p, b = sub(data, at, tab - 1), sub(data, tab + 1, nl - 1)
        if find(p, "\\", 1, true) then p = unescape(p) end
        if find(b, "\\", 1, true) then b = unescape(b) end
        reqs[#reqs + 1] = wrk.format("POST", p, headers, b)
      end
    end
    n = n + 1
  end
  local carry = ""
  while true do
    local block = f:read(8 * 1024 * 1024)
    if not block then break end
    local data = carry .. block
    local at = 1
    while true do
      local nl = find(data, "\n", at, true)
      if not nl then break end
      take(data, at, nl)
      at = nl + 1
    end
    carry = sub(data, at)
  end
  f:close()
  if #carry > 0 then take(carry, 1, #carry + 1) end
  if #reqs == 0 then error("no requests for thread " .. id .. " in " .. path) end
  share = #reqs
  if id == nthreads - 1 then assert(io.open(ready_path, "w")):close() end
end

-- Blocks this thread's event loop (nothing else runs on it) until the last thread has loaded.
local function wait_for_start()
  while true do
    local f = io.open(ready_path, "r")
    if f then
      f:close()
      started = true
      return
    end
    os.execute("sleep 0.01")
  end
end

function request()
  if not checked then
    checked = true
    return reqs[1]
  end
  if not started then wait_for_start() end
  pos = pos + 1
  if pos > #reqs then
    pos = 1
    wraps = wraps + 1
  end
  sent = sent + 1
  return reqs[pos]
end

if bodies then
  function response(status, headers, body)
    count_status(status, body)
    if body == "success" then successes = successes + 1 end
  end
end

function done(summary, latency, requests)
  print_summary(summary, latency, function(threads)
    local repeats, succ, shares = 0, 0, 0
    for _, t in ipairs(threads) do
      local s, n = t:get("sent") or 0, t:get("share") or 0
      if s > n then repeats = repeats + (s - n) end
      succ = succ + (t:get("successes") or 0)
      shares = shares + n
    end
    return string.format("pushes_loaded=%d repeats_sent=%d success_bodies=%d", shares, repeats, succ)
  end)
end
