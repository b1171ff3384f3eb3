-- wrk -s scripts/bench/push.lua http://host:port -- pushes.tsv
-- pushes.tsv (from `loadgen gen`): one request per line, `path?query` TAB body, with `\n` and
-- `\\` escaped. Thread k of n takes lines k, k+n, k+2n, … so threads never send the same push;
-- each rotates through its share. A push sent again (after a wrap) is answered from mpgate's
-- dedupe memory, so the summary reports how many requests were such repeats.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local reqs = {}
local pos = 0
wraps = 0
sent = 0
successes = 0

local function unescape(s)
  return (s:gsub("\\(.)", function(c) if c == "n" then return "\n" end return c end))
end

function init(args)
  local path = args[1] or error("usage: wrk -s push.lua URL -- pushes.tsv")
  local nthreads = tonumber(os.getenv("WRK_THREADS") or "1")
  local f = assert(io.open(path, "r"))
  local n = 0
  for line in f:lines() do
    if n % nthreads == id then
      local p, b = line:match("^([^\t]*)\t(.*)$")
      if p then
        reqs[#reqs + 1] = wrk.format("POST", unescape(p), { ["Content-Type"] = "text/xml" }, unescape(b))
      end
    end
    n = n + 1
  end
  f:close()
  if #reqs == 0 then error("no requests for thread " .. id .. " in " .. path) end
  share = #reqs
end

function request()
  pos = pos + 1
  if pos > #reqs then
    pos = 1
    wraps = wraps + 1
  end
  sent = sent + 1
  return reqs[pos]
end

function response(status, headers, body)
  count_status(status, body)
  if body == "success" then successes = successes + 1 end
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
