-- Shared by the wrk scenarios: one machine-readable line per run.
-- RESULT <requests> <req/s> <p50 ms> <p95 ms> <p99 ms> <errors>
function report(summary, latency)
  local e = summary.errors
  io.write(string.format("RESULT %d %.1f %.2f %.2f %.2f %d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.status + e.timeout))
end
