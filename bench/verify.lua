-- wrk script: GET one confirmation link after another, from the file in TOKENS
-- (one /verify/TOKEN path per line), each thread starting at its own offset.
-- done() reports answers other than 200 and whether the links ran out (a link
-- opened twice confirms nothing the second time, and is cheaper).
local paths = {}
for line in io.lines(os.getenv("TOKENS")) do paths[#paths + 1] = line end
local i = 0
local non200 = 0
local threads = {}

function setup(thread)
  thread:set("offset", #threads * 100000)
  table.insert(threads, thread)
end

function request()
  i = i + 1
  return wrk.format("GET", paths[((offset or 0) + i - 1) % #paths + 1])
end

function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + (thread:get("non200") or 0) end
  io.write(string.format("non-2xx responses: %d, links: %d\n", summary.errors.status, #paths))
  io.write(string.format("bench non200: %d\n", total))
  io.write(string.format("bench links: %d\n", #paths))
end
