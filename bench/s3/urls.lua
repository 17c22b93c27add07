-- wrk script for bench/s3/run.sh: cycle through presigned S3 paths, one request each.
-- env: URLS (file with one "/bucket/key?X-Amz-..." per line), METHOD (GET or PUT),
-- SIZE (PUT body bytes). Each thread starts at a different offset so 32 connections
-- do not all hit the same key at once. wrk bounds the run by -d (time).
-- ADDRS (optional, "HOST:PORT HOST:PORT ..."): thread i connects to the i-th address
-- (round robin), so -t 2 sends half the connections to each of two gateways
-- (bench/cluster/run.py). The Host header stays the command line's, which the presigned
-- signatures cover, so every gateway of one cluster accepts the same URLs.
local paths = {}
local addrs = {}
for a in (os.getenv("ADDRS") or ""):gmatch("%S+") do
   addrs[#addrs + 1] = a
end
local method = os.getenv("METHOD") or "GET"
local body = nil
local idx = 0
local thread_no = 0

function setup(thread)
   thread:set("tid", thread_no)
   if #addrs > 0 then
      local host, port = addrs[thread_no % #addrs + 1]:match("^(.*):(%d+)$")
      thread.addr = wrk.lookup(host, port)[1]
   end
   thread_no = thread_no + 1
end

function init(args)
   for line in io.lines(os.getenv("URLS")) do
      paths[#paths + 1] = line
   end
   if method == "PUT" then
      body = string.rep("x", tonumber(os.getenv("SIZE") or "4096"))
   end
   idx = ((tid or 0) * 7919) % #paths
end

function request()
   idx = idx % #paths + 1
   return wrk.format(method, paths[idx], nil, body)
end

function done(summary, latency, requests)
   local non2xx = summary.errors.status
   io.write(string.format("wrk-summary: requests=%d duration_s=%.2f rps=%.1f non2xx=%d "
      .. "connect_err=%d read_err=%d write_err=%d timeout=%d p50_ms=%.2f p99_ms=%.2f\n",
      summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
      non2xx, summary.errors.connect, summary.errors.read, summary.errors.write,
      summary.errors.timeout, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
