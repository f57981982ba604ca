-- wrk script for bench/ingest.py: each thread owns one connection and posts its own share of
-- the pre-built gzip batches, remembering which batch each 202 acknowledged.
--
-- Settings come from the environment (wrk's final summary cannot see script arguments):
-- BENCH_BODY_DIR, BENCH_PATH, BENCH_AUTHORIZATION, BENCH_THREADS, BENCH_RESULT_FILE.
-- Thread t sends batches t, t + T, t + 2T, ... (T threads), read from <body dir>/bodies-<t>
-- with their sizes in <body dir>/sizes-<t>; it starts over when its share runs out.

local threads = {}
local counter = 0

function setup(thread)
   thread:set("index", counter)
   thread:set("count", 0)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local dir, path = os.getenv("BENCH_BODY_DIR"), os.getenv("BENCH_PATH")
   local authorization = os.getenv("BENCH_AUTHORIZATION")
   local total = tonumber(os.getenv("BENCH_THREADS"))
   local headers = {
      ["Authorization"] = authorization,
      ["Content-Encoding"] = "gzip",
      ["Content-Type"] = "application/json",
   }
   local file = assert(io.open(dir .. "/bodies-" .. index, "rb"))
   local data = file:read("*a")
   file:close()
   prepared, batches = {}, {}
   local offset, j = 1, 0
   for size in io.lines(dir .. "/sizes-" .. index) do
      size = tonumber(size)
      table.insert(prepared, wrk.format("POST", path, headers, data:sub(offset, offset + size - 1)))
      table.insert(batches, index + j * total)
      offset = offset + size
      j = j + 1
   end
   next_request = 1
   in_flight = nil
   acked, unanswered, failed = {}, {}, 0
end

function request()
   if in_flight ~= nil then
      -- the previous request got no answer (its connection broke): it may or may not be stored
      table.insert(unanswered, in_flight)
   end
   in_flight = batches[next_request]
   local req = prepared[next_request]
   next_request = next_request % #prepared + 1
   return req
end

function response(status, headers, body)
   if status == 202 then
      table.insert(acked, in_flight)
   else
      failed = failed + 1
   end
   in_flight = nil
end

function done(summary, latency, requests)
   local out = assert(io.open(os.getenv("BENCH_RESULT_FILE"), "w"))
   out:write(string.format("requests %d\n", summary.requests))
   out:write(string.format("duration_us %d\n", summary.duration))
   out:write(string.format("p50_us %d\n", latency:percentile(50)))
   out:write(string.format("p99_us %d\n", latency:percentile(99)))
   out:write(string.format("max_us %d\n", latency.max))
   local errors = summary.errors
   out:write(string.format("socket_errors %d\n",
      errors.connect + errors.read + errors.write + errors.timeout))
   out:write(string.format("non_2xx %d\n", errors.status))
   for _, thread in ipairs(threads) do
      out:write("failed " .. thread:get("failed") .. "\n")
      out:write("acked " .. table.concat(thread:get("acked"), " ") .. "\n")
      local open = thread:get("unanswered")
      local last = thread:get("in_flight")
      if last ~= nil then
         table.insert(open, last)
      end
      out:write("unanswered " .. table.concat(open, " ") .. "\n")
   end
   out:close()
end
