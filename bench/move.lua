-- POST /deals/{id}/move: a random seeded deal (BENCH_FIRST..BENCH_LAST) to a random open stage
-- (BENCH_STAGES, comma separated), as a drop on the board does; session cookie and CSRF header.
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
local cookie = os.getenv("BENCH_COOKIE")
local csrf = os.getenv("BENCH_CSRF")
local first = tonumber(os.getenv("BENCH_FIRST"))
local last = tonumber(os.getenv("BENCH_LAST"))
local stages = {}
for s in string.gmatch(os.getenv("BENCH_STAGES"), "[^,]+") do stages[#stages + 1] = s end
init = function(args) math.randomseed(os.time() + math.floor(os.clock() * 1000000)) end
request = function()
  local id = math.random(first, last)
  local stage = stages[math.random(1, #stages)]
  return wrk.format("POST", "/deals/" .. id .. "/move",
    { ["Cookie"] = cookie, ["X-CSRF-Token"] = csrf, ["Content-Type"] = "application/x-www-form-urlencoded" },
    "stage_id=" .. stage .. "&after=&loss_reason_id=&filter=")
end
done = function(summary, latency, requests) report(summary, latency) end
