-- wrk script: POSTs OpenRTB bid requests read from the files named after `--`,
-- round robin, on keep-alive connections. Requests are formatted once per thread at
-- start, so the client spends its time sending, not building.
--
--   wrk -t1 -c64 -d10s -s perf/wrk/bid.lua http://127.0.0.1:8080/bid/exchange-a -- a.json b.json

local requests = {}
local next_request = 0

function init(args)
  for _, path in ipairs(args) do
    local file = assert(io.open(path, "rb"), "cannot open " .. path)
    local body = file:read("*a")
    file:close()
    requests[#requests + 1] = wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
  end
  if #requests == 0 then
    error("name request files after --")
  end
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end
