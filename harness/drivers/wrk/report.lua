-- The request mix and the JSON report for harness.drivers.wrk.driver (wrk 4, LuaJIT).
--
-- Environment, set by the driver:
--   CONCURBENCH_WRK_REQUESTS  the pre-built requests: a line "<n>", then for each request a
--                             line "<weight> <length>" followed by <length> raw bytes
--   CONCURBENCH_WRK_OUT       where done() writes the report: one JSON object, numbers only
--
-- One request is sent as wrk's static request (no Lua per request); a weighted mix costs one
-- request() call per request. The report carries wrk's latency histogram (1 us buckets) as
-- [microseconds, count] pairs, read in one pass from wrk's `stats` struct through the FFI:
-- the public latency(i) rescans the bucket array from the start for every i, which takes
-- minutes for a wide spread. If the struct does not look like wrk 4's, the report carries
-- a grid of latency:percentile() values instead and the driver rebuilds an approximation.
-- Both describe wrk's histogram after its coordinated-omission correction (stats_correct);
-- the driver undoes that correction for the pairs.

local REQUESTS_ENV, OUT_ENV = "CONCURBENCH_WRK_REQUESTS", "CONCURBENCH_WRK_OUT"

local function read_requests(path)
   local f = assert(io.open(path, "rb"))
   local entries = {}
   for i = 1, tonumber(f:read("*l")) do
      local weight, length = f:read("*l"):match("^(%d+) (%d+)$")
      entries[i] = { weight = tonumber(weight), raw = f:read(tonumber(length)) }
   end
   f:close()
   return entries
end

function init(args)
   local entries = read_requests(os.getenv(REQUESTS_ENV))
   if #entries == 1 then
      local raw = entries[1].raw
      wrk.format = function() return raw end  -- wrk.init() builds its static request with it
      return
   end
   local raws, cumulative, total = {}, {}, 0
   for i, entry in ipairs(entries) do
      total = total + entry.weight
      raws[i], cumulative[i] = entry.raw, total
   end
   math.randomseed(os.time())
   request = function()  -- a global request() makes wrk call it for every request
      local r = math.random() * total
      for i = 1, #cumulative do
         if r < cumulative[i] then return raws[i] end
      end
      return raws[#raws]
   end
end

-- wrk 4's stats.h: { uint64_t count, limit, min, max; uint64_t data[limit]; }, data[v]
-- counting the latencies of v microseconds. nil if the struct is not that.
local function histogram_pairs(latency)
   local ok, ffi = pcall(require, "ffi")
   if not ok then return nil end
   pcall(ffi.cdef, "typedef struct { uint64_t count, limit, min, max; } concurbench_stats;")
   local got, head = pcall(function() return ffi.cast("concurbench_stats **", latency)[0] end)
   if not got or head == nil then return nil end
   local count, limit = tonumber(head.count), tonumber(head.limit)
   local min, max = tonumber(head.min), tonumber(head.max)
   if count == 0 then
      return (max == 0 and latency.max == 0) and {} or nil
   end
   if min ~= latency.min or max ~= latency.max or max >= limit then return nil end
   local data, out, seen = ffi.cast("uint64_t *", head) + 4, {}, 0
   for v = min, max do
      local n = tonumber(data[v])
      if n ~= 0 then
         out[#out + 1] = string.format("[%d,%d]", v, n)
         seen = seen + n
      end
   end
   if seen ~= count then return nil end
   return out
end

local function percentile_grid(latency)
   local grid = {}
   for p = 1, 99 do grid[#grid + 1] = p end
   for i = 1, 9 do grid[#grid + 1] = 99 + i / 10 end
   for i = 1, 9 do grid[#grid + 1] = 99.9 + i / 100 end
   for i = 1, 9 do grid[#grid + 1] = 99.99 + i / 1000 end
   local out = {}
   for i, p in ipairs(grid) do
      out[i] = string.format("[%.3f,%d]", p, latency:percentile(p))
   end
   return out
end

function done(summary, latency, requests)
   local e = summary.errors
   local pairs_ = histogram_pairs(latency)
   local parts = {
      string.format('"requests": %d, "duration_us": %d', summary.requests, summary.duration),
      string.format('"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}',
                    e.connect, e.read, e.write, e.status, e.timeout),
      string.format('"wrk_us": {"p50": %d, "p90": %d, "p99": %d, "p999": %d, "max": %d, "mean": %.3f}',
                    latency:percentile(50), latency:percentile(90), latency:percentile(99),
                    latency:percentile(99.9), latency.max, latency.mean),
      pairs_ and ('"latency": [' .. table.concat(pairs_, ",") .. "]")
             or ('"percentiles": [' .. table.concat(percentile_grid(latency), ",") .. "]"),
   }
   local f = assert(io.open(os.getenv(OUT_ENV), "w"))
   f:write("{", table.concat(parts, ", "), "}\n")
   f:close()
end
