-- wrk script: GET /api/orders/{id} for ids picked at random from the file
-- BENCH_IDS_FILE (one order id a line, written by run.sh), so reads hit many
-- different keys of the read model rather than one hot, cached entry.

local ids = {}
for line in io.lines(os.getenv("BENCH_IDS_FILE")) do
  if #line > 0 then ids[#ids + 1] = "/api/orders/" .. line end
end
assert(#ids > 0, "no order ids in BENCH_IDS_FILE")

-- Same per-thread seeding as orders.lua: the Lua states start with one seed.
local next_id = 0
function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
end

function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0))
end

request = function()
  return wrk.format("GET", ids[math.random(1, #ids)])
end
