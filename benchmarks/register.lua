-- wrk script: POST /register with a fresh Idempotency-Key per request (what a fleet of
-- new agents sends); prints the counts as one JSON line at the end.
-- Usage: wrk -t2 -c64 -d8s -s benchmarks/register.lua http://127.0.0.1:PORT
-- The registration token comes from the environment (FLEETCONF_REGISTRATION_TOKEN).

local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread_id = thread_id + 1
  thread:set("id", thread_id)
  table.insert(threads, thread)
end

local function uuid4()
  local template = "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx"
  return (string.gsub(template, "[xy]", function(c)
    local v = (c == "x") and math.random(0, 15) or math.random(8, 11)
    return string.format("%x", v)
  end))
end

function init(args)
  math.randomseed(os.time() * 1000 + id)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("FLEETCONF_REGISTRATION_TOKEN")
end

function request()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = uuid4()
  local body = string.format('{"hostname":"wrk-%d-%d"}', id, counter)
  return wrk.format(nil, "/register", nil, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "non_2xx": %d, "timeouts": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "seconds": %.3f, ' ..
    '"p50_ms": %.2f, "p99_ms": %.2f}\n',
    summary.requests, summary.errors.status, summary.errors.timeout,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
end
