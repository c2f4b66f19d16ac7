-- wrk script: POSTs OpenRTB bid requests read from the files named after `--`,
-- round robin, on keep-alive connections. Requests are formatted once per thread at
-- start, so the client spends its time sending, not building.
--
--   wrk -t1 -c64 -d10s -s perf/wrk/bid.lua http://127.0.0.1:8080/bid/exchange-a -- a.json b.json
--
-- Options, before the files:
--   --depth=N       write N requests back to back per turn (HTTP pipelining, as
--                   TechEmpower runs it); wrk counts each answer
--   --accept=TYPE   send `Accept: TYPE` (application/x-flatbuffers: the FlatBuffers answer)

local requests = {}
local next_request = 0

function init(args)
  local depth = 1
  local headers = { ["Content-Type"] = "application/json" }
  local bodies = {}
  for _, arg in ipairs(args) do
    local d = arg:match("^%-%-depth=(%d+)$")
    local accept = arg:match("^%-%-accept=(.+)$")
    if d then
      depth = tonumber(d)
      assert(depth >= 1, "--depth must be at least 1")
    elseif accept then
      headers["Accept"] = accept
    elseif arg:sub(1, 2) == "--" then
      error("unknown option " .. arg .. " (known: --depth=N, --accept=TYPE)")
    else
      local file = assert(io.open(arg, "rb"), "cannot open " .. arg)
      bodies[#bodies + 1] = file:read("*a")
      file:close()
    end
  end
  if #bodies == 0 then
    error("name request files after --")
  end
  -- Turn i writes the `depth` requests that follow request i round robin.
  for i = 1, #bodies do
    local batch = {}
    for k = 0, depth - 1 do
      local body = bodies[(i - 1 + k) % #bodies + 1]
      batch[#batch + 1] = wrk.format("POST", nil, headers, body)
    end
    requests[i] = table.concat(batch)
  end
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end
