-- The public API with a bearer token (BENCH_TOKEN):
--   BENCH_MODE=get:    GET BENCH_PATH, where "{id}" takes each of BENCH_IDS (comma-separated) in turn;
--   BENCH_MODE=create: POST /api/v4/leads with a batch of 50 leads in pipeline BENCH_PIPELINE.
-- BENCH_DELAY_MS (optional): each connection waits this long after a response before its next
-- request, for a steady load below saturation instead of requests back to back.
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
local token = os.getenv("BENCH_TOKEN")
local mode = os.getenv("BENCH_MODE") or "get"
local path = os.getenv("BENCH_PATH") or "/api/v4/leads"
local ids = {}
for id in string.gmatch(os.getenv("BENCH_IDS") or "", "[^,]+") do ids[#ids + 1] = id end
local pipeline = os.getenv("BENCH_PIPELINE") or "0"
local n = 0
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if pause then
  delay = function() return pause end
end
request = function()
  n = n + 1
  local headers = { ["Authorization"] = "Bearer " .. token }
  if mode == "create" then
    headers["Content-Type"] = "application/json"
    local items = {}
    for i = 1, 50 do
      items[i] = string.format('{"name":"API lead %d-%d","price":%d,"pipeline_id":%s}', n, i, i * 100, pipeline)
    end
    return wrk.format("POST", "/api/v4/leads", headers, "[" .. table.concat(items, ",") .. "]")
  end
  local p = path
  if #ids > 0 then p = string.gsub(path, "{id}", ids[(n % #ids) + 1]) end
  return wrk.format("GET", p, headers)
end
done = function(summary, latency, requests) report(summary, latency) end
