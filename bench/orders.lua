-- wrk script: POST /api/orders, each request for a random user in 1..BENCH_USERS.
-- Spreading users matters: orders of one user serialize on that user's account
-- aggregate, so a single user id would measure lock contention, not throughput.
--
-- Pacing: if BENCH_RATE is set (total requests/s), each wrk thread hands out
-- send slots on a fixed schedule (RATE/threads per second) through delay(), so
-- the offered rate does not drop when responses get slower (plain wrk has no
-- -R and wrk2 is not packaged). Caveat: wrk still times each request from its
-- actual send, so unlike wrk2 this is not corrected for coordinated omission.

local users = tonumber(os.getenv("BENCH_USERS") or "2000")
local rate = tonumber(os.getenv("BENCH_RATE") or "0")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local tmpl = '{"user_id":"%d","energy_amount":65000,"duration":"1h",' ..
  '"receive_address":"TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2","cost_trx":5.85}'

-- Each wrk thread has its own Lua state with the same default seed; give each
-- thread its own id (setup runs in the main state) and seed from it in init.
local next_id = 0
function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
end

function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0))
end

request = function()
  return wrk.format(nil, "/api/orders", nil, string.format(tmpl, math.random(1, users)))
end

if rate > 0 then
  -- wrk's Lua has no wall clock; LuaJIT's FFI gives us clock_gettime.
  local ffi = require("ffi")
  ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clk, bench_timespec *ts);
  ]]
  local ts = ffi.new("bench_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local threads = tonumber(os.getenv("BENCH_THREADS") or "2")
  local interval = threads * 1000 / rate -- ms between slots, per thread
  local next_slot = nil

  -- wrk calls delay() before every request and waits that many ms. Each call
  -- claims the next slot; after a stall of over 1 s we restart the schedule
  -- instead of bursting to catch up.
  delay = function()
    local t = now_ms()
    if next_slot == nil or next_slot < t - 1000 then next_slot = t end
    local slot = next_slot
    next_slot = next_slot + interval
    return math.max(0, slot - t)
  end
end
