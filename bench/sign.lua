-- wrk script: POST distinct valid signatures to /p/{slug}/sign.
-- Set by the runner through the environment: SLUG, FORM_TOKEN, RUN.
local slug = os.getenv("SLUG")
local token = os.getenv("FORM_TOKEN")
local run = os.getenv("RUN")
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  local body = "kind=individual&name=Load+Tester&country=GB&display=public&occupation=Tester"
    .. "&email=load-" .. run .. "-" .. thread_id .. "-" .. counter .. "%40example.org"
    .. "&form_token=" .. token
  return wrk.format("POST", "/p/" .. slug .. "/sign",
    {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end

function done(summary, latency, requests)
  io.write(string.format("non-3xx responses: %d\n", summary.errors.status))
end
