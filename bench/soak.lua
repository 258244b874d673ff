-- wrk script for the soak: POST prepared bodies in turn and count the answers that are not right.
-- usage: wrk -s bench/soak.lua URL -- CONTENT_TYPE EXPECTED_STATUS CLASSES BODY_FILE [BODY_FILE ...]
-- EXPECTED_STATUS is a status ("200") or a class of them ("4xx"). CLASSES is the digits a right
-- answer names, in order ("0123456789"), read from its "class" fields or from a V2 "data" array;
-- "-" checks the status only. wrk's own error counts treat every 4xx as an error, so the script
-- keeps its own.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  content_type, expected_status, classes = args[1], args[2], args[3]
  bodies = {}
  for index = 4, #args do
    local handle = assert(io.open(args[index], "rb"))
    table.insert(bodies, wrk.format("POST", nil, {["Content-Type"] = content_type}, handle:read("*a")))
    handle:close()
  end
  turn, unexpected_status, server_errors, wrong_classes = 0, 0, 0, 0
end

function request()
  turn = turn % #bodies + 1
  return bodies[turn]
end

local function status_expected(status)
  if expected_status:sub(2) == "xx" then
    return math.floor(status / 100) == tonumber(expected_status:sub(1, 1))
  end
  return status == tonumber(expected_status)
end

local function named_classes(body)
  local digits = {}
  for digit in body:gmatch('"class":(%d+)') do
    table.insert(digits, digit)
  end
  if #digits == 0 then
    return ((body:match('"data":%[([%d,]*)%]') or ""):gsub(",", ""))
  end
  return table.concat(digits)
end

function response(status, headers, body)
  if status >= 500 then
    server_errors = server_errors + 1
  end
  if not status_expected(status) then
    unexpected_status = unexpected_status + 1
  elseif classes ~= "-" and named_classes(body) ~= classes then
    wrong_classes = wrong_classes + 1
  end
end

function done(summary, latency, requests)
  local counts = {unexpected_status = 0, server_errors = 0, wrong_classes = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(counts) do
      counts[name] = counts[name] + thread:get(name)
    end
  end
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "p50_ms": %.3f, "p99_ms": %.3f, "unexpected_status": %d, ' ..
    '"server_errors": %d, "wrong_classes": %d, "connection_errors": %d}\n',
    summary.requests, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    counts.unexpected_status, counts.server_errors, counts.wrong_classes,
    errors.connect + errors.read + errors.write + errors.timeout))
end
