-- wrk script: POST a multipart body built from image files, then report JSON statistics.
-- usage: wrk -s bench/multipart.lua URL -- FIELD FILE [FILE ...]
local boundary = "mnist-serve-bench-boundary"

local function read_file(path)
  local handle = assert(io.open(path, "rb"))
  local data = handle:read("*a")
  handle:close()
  return data
end

function init(args)
  local field = args[1]
  local parts = {}
  for i = 2, #args do
    parts[#parts + 1] = "--" .. boundary .. "\r\n"
      .. 'Content-Disposition: form-data; name="' .. field .. '"; filename="' .. i .. '.png"\r\n'
      .. "Content-Type: image/png\r\n\r\n" .. read_file(args[i]) .. "\r\n"
  end
  wrk.method = "POST"
  wrk.body = table.concat(parts) .. "--" .. boundary .. "--\r\n"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
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
