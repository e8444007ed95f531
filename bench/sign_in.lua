-- POST /sign-in with a valid pre-session CSRF cookie and token (BENCH_COOKIE, BENCH_BODY).
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
local cookie = os.getenv("BENCH_COOKIE")
local body = os.getenv("BENCH_BODY")
request = function()
  return wrk.format("POST", "/sign-in",
    { ["Cookie"] = cookie, ["Content-Type"] = "application/x-www-form-urlencoded" }, body)
end
done = function(summary, latency, requests) report(summary, latency) end
