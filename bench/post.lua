-- wrk script: POST one prepared request body, then report JSON statistics.
-- usage: wrk -s bench/post.lua URL -- CONTENT_TYPE BODY_FILE [HEADER_NAME HEADER_VALUE]
-- The benchmarks write the bodies (multipart, KServe V1 JSON, V2 binary tensors), so every server
-- is loaded by the same script.
function init(args)
  local handle = assert(io.open(args[2], "rb"))
  wrk.body = handle:read("*a")
  handle:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = args[1]
  if args[3] then
    wrk.headers[args[3]] = args[4]
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_ms": %.3f, "p99_ms": %.3f, ' ..
    '"non_2xx": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    errors.status, errors.connect, errors.read, errors.write, errors.timeout))
end
