-- GET the path in BENCH_PATH with the cookie in BENCH_COOKIE (may be empty).
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
local cookie = os.getenv("BENCH_COOKIE") or ""
request = function()
  local headers = {}
  if cookie ~= "" then headers["Cookie"] = cookie end
  return wrk.format("GET", os.getenv("BENCH_PATH"), headers)
end
done = function(summary, latency, requests) report(summary, latency) end
