-- wrk -s scripts/bench/healthz.lua http://host:port/healthz
-- Plain GETs; reports the same BENCH line as push.lua.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

if bodies then
  function response(status, headers, body)
    count_status(status, body)
  end
end

function done(summary, latency, requests)
  print_summary(summary, latency, nil)
end
