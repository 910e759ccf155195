-- wrk script: cycle through the request paths listed (one per line) in $WRK_URLS, so every
-- request of a run hits the next tile / bbox of the list; report p50/p95/p99 as one JSON line.
local paths = {}
for line in io.lines(os.getenv("WRK_URLS")) do
  if #line > 0 then paths[#paths + 1] = line end
end
local i = 0

request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], { ["Accept-Encoding"] = "gzip" })
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "socket_errors": %d, "bad_status": %d, ' ..
    '"p50_us": %d, "p95_us": %d, "p99_us": %d, "bytes": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), summary.bytes))
end
