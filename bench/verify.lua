-- wrk script: GET one confirmation link after another, from the file in TOKENS
-- (one /verify/TOKEN path per line), each thread starting at its own offset.
local paths = {}
for line in io.lines(os.getenv("TOKENS")) do paths[#paths + 1] = line end
local i = 0
local threads = {}

function setup(thread)
  thread:set("offset", #threads * 100000)
  table.insert(threads, thread)
end

function request()
  i = i + 1
  return wrk.format("GET", paths[((offset or 0) + i - 1) % #paths + 1])
end

function done(summary, latency, requests)
  io.write(string.format("non-2xx responses: %d, links: %d\n", summary.errors.status, #paths))
end
