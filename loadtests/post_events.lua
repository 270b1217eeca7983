-- wrk script for loadtests/bench.py: POSTs with a unique key on every request.
--
--   wrk -t T -c C -d 10s -s loadtests/post_events.lua http://127.0.0.1:PORT \
--       -- MODE TAG SELLERS BATCH PHASE
--
-- MODE    single  one order.placed per request to /v1/events
--         batch   {"events": [BATCH x order.placed]} to /v1/events
--         insert  the same body as single, to /insert (loadtests/baseline_insert.py)
-- TAG     run tag, makes keys and order ids unique across runs
-- SELLERS registered sellers bench-TAG-0 .. bench-TAG-(SELLERS-1), used in turn
-- BATCH   events per request in batch mode
-- PHASE   a short word (w, s, b ...) keeping keys of the phases of one run apart
--
-- From the environment: BENCH_KEY, the bearer key (kept off the command line);
-- BENCH_PORTS, comma-separated loopback ports: thread i talks to port
-- i mod #PORTS, which is how the bench spreads its connections over several
-- `omniledger serve` processes. (setup() runs in wrk's main Lua state, which
-- never sees the script arguments, hence the environment.)
-- done() prints one line "WRK_JSON {...}" with counts and latency percentiles
-- in microseconds; the bench parses that line and nothing else.

local mode, tag, sellers, batch, phase = "single", "t", 1, 100, "p"
local ports = {}
local thread_count = 0

local function split(text, sep)
  local out = {}
  for part in string.gmatch(text, "([^" .. sep .. "]+)") do
    out[#out + 1] = part
  end
  return out
end

local function parse_args(args)
  mode = args[1] or mode
  tag = args[2] or tag
  sellers = tonumber(args[3] or "1")
  batch = tonumber(args[4] or "100")
  phase = args[5] or phase
end

-- Runs once per thread in the main Lua state, before the threads start.
function setup(thread)
  if #ports == 0 then
    ports = split(os.getenv("BENCH_PORTS") or "", ",")
  end
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  if #ports > 0 then
    local port = ports[((thread_count - 1) % #ports) + 1]
    local addrs = wrk.lookup("127.0.0.1", port)
    thread.addr = addrs[1]
  end
end

local counter = 0
local key = ""
local path = "/v1/events"
local headers = {}
local occurred_at = "2026-11-30T10:00:00+08:00"

function init(args)
  parse_args(args)
  if mode == "insert" then
    path = "/insert"
  end
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "")
  occurred_at = os.date("!%Y-%m-%dT%H:%M:%SZ")
  -- tid is set by setup(); keys are TAG PHASE-tid-counter, unique per run
  key = tag .. phase .. "-" .. tostring(tid)
end

local function order_placed()
  counter = counter + 1
  local n = key .. "-" .. counter
  local seller = "bench-" .. tag .. "-" .. (counter % sellers)
  return '{"idempotency_key":"op-' .. n .. '","type":"order.placed","occurred_at":"'
    .. occurred_at .. '","seller_id":"' .. seller .. '","order_id":"' .. n
    .. '","channel":"qris","amount":"150000"}'
end

function request()
  local body
  if mode == "batch" then
    local parts = {}
    for i = 1, batch do
      parts[i] = order_placed()
    end
    body = '{"events":[' .. table.concat(parts, ",") .. "]}"
  else
    body = order_placed()
  end
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
