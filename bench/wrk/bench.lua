-- The one wrk script of `make bench` (bench/run.py sets everything through the environment).
--
--   BENCH_MODE      create: POST BENCH_BODY with a unique Idempotency-Key per request
--                   (BENCH_PREFIX-thread-counter); replay: POST the lines of
--                   BENCH_REQUESTS ("webhook-id TAB timestamp TAB signature TAB body"),
--                   each thread its own share, wrapping around (counted) when they run out;
--                   get: GET BENCH_PATH.
--   BENCH_PATH      the request path; BENCH_AUTH an API key for `Authorization: Bearer`.
--   BENCH_THREADS   wrk's -t, so each thread knows its share of BENCH_REQUESTS.
--
-- Any answer that is not 2xx is counted (non2xx) and the first one kept as a sample:
-- bench/run.py refuses a run that has any, instead of averaging failures into the numbers.
-- done() prints one line `BENCH_RESULT {json}`.

local mode = os.getenv("BENCH_MODE") or "get"
local path = os.getenv("BENCH_PATH") or "/"
local body = os.getenv("BENCH_BODY")
local auth = os.getenv("BENCH_AUTH")
local prefix = os.getenv("BENCH_PREFIX") or tostring(os.time())
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

-- Per thread (globals, so that done() can read them with thread:get).
counter = 0
non2xx = 0
wrapped = 0
bad = ""
local headers = { ["Content-Type"] = "application/json" }
local replay = {}
local fixed = nil

function init(args)
  if auth and auth ~= "" then
    headers["Authorization"] = "Bearer " .. auth
  end
  if mode == "replay" then
    local i = 0
    for line in io.lines(os.getenv("BENCH_REQUESTS")) do
      if i % nthreads == tid - 1 then
        local id, ts, sig, payload = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
        replay[#replay + 1] = wrk.format("POST", path, {
          ["Content-Type"] = "application/json",
          ["webhook-id"] = id,
          ["webhook-timestamp"] = ts,
          ["webhook-signature"] = sig,
        }, payload)
      end
      i = i + 1
    end
  elseif mode == "get" then
    fixed = wrk.format("GET", path, headers)
  end
end

function request()
  counter = counter + 1
  if mode == "create" then
    headers["Idempotency-Key"] = prefix .. "-" .. tid .. "-" .. counter
    return wrk.format("POST", path, headers, body)
  elseif mode == "replay" then
    if counter > #replay then
      wrapped = wrapped + 1
    end
    return replay[((counter - 1) % #replay) + 1]
  end
  return fixed
end

function response(status, resp_headers, resp_body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if bad == "" then
      bad = tostring(status) .. " " .. string.sub(resp_body or "", 1, 300)
    end
  end
end

local function clean(text)
  return (string.gsub(text or "", '[^%w%s%.,:;_%-%(%)/=]', "?"):gsub("%s", " "))
end

function done(summary, latency, requests)
  local total_non2xx, total_wrapped, sample = 0, 0, ""
  for _, thread in ipairs(threads) do
    total_non2xx = total_non2xx + (thread:get("non2xx") or 0)
    total_wrapped = total_wrapped + (thread:get("wrapped") or 0)
    local b = thread:get("bad")
    if sample == "" and b and b ~= "" then
      sample = b
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_s": %.4f, "rps": %.2f, "p50_ms": %.3f, '
      .. '"p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, "mean_ms": %.3f, "non2xx": %d, '
      .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, '
      .. '"wrapped": %d, "bad_sample": "%s"}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000,
    total_non2xx, e.connect, e.read, e.write, e.timeout, total_wrapped, clean(sample)
  ))
end
