-- POST /deals/pipelines/{id}/deals: quick-add a deal at the top of a column (BENCH_PIPELINE,
-- BENCH_STAGE); answered with a redirect to the board (not followed).
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
local cookie = os.getenv("BENCH_COOKIE")
local csrf = os.getenv("BENCH_CSRF")
local path = "/deals/pipelines/" .. os.getenv("BENCH_PIPELINE") .. "/deals"
local stage = os.getenv("BENCH_STAGE")
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", path,
    { ["Cookie"] = cookie, ["X-CSRF-Token"] = csrf, ["Content-Type"] = "application/x-www-form-urlencoded" },
    "name=Bench+deal+" .. n .. "&price=1000&tags=&stage_id=" .. stage)
end
done = function(summary, latency, requests) report(summary, latency) end
