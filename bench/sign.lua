-- wrk script: POST distinct valid signatures to /p/{slug}/sign.
-- Set by the runner through the environment:
--   SLUG     the petition
--   TOKENS   a file of sign-form tokens, one a line, minted ahead with the server's
--            SECRET_KEY (a token carries at most 5 submissions: each is used for 5)
--   ORIGIN   the server's own origin (a browser's POST names it; others get 403)
--   RUN      a word that makes this run's emails new
--   SPREAD   "1": each request from its own /24 network (X-Forwarded-For, for a server
--            with TRUSTED_PROXIES=127.0.0.1) and its own email domain, so that the
--            sign limits run but hold or refuse nothing
-- Every answer should be a 303; done() reports the others.
local slug = os.getenv("SLUG")
local origin = os.getenv("ORIGIN")
local run = os.getenv("RUN")
local spread = os.getenv("SPREAD") == "1"
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
local USES = 5
local counter = 0
local non303 = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function request()
  local n = counter + (thread_id or 0) * 1000000000
  counter = counter + 1
  local token = tokens[(math.floor(n / USES)) % #tokens + 1]
  local domain = "example.org"
  local headers = {["Content-Type"] = "application/x-www-form-urlencoded", ["Origin"] = origin}
  if spread then
    local k = n % 65536
    domain = "d" .. k .. ".example.org"
    headers["X-Forwarded-For"] = "10." .. math.floor(k / 256) .. "." .. (k % 256) .. ".7"
  end
  local body = "kind=individual&name=Load+Tester&country=GB&display=public&occupation=Tester"
    .. "&email=load-" .. run .. "-" .. n .. "%40" .. domain
    .. "&form_token=" .. token
  return wrk.format("POST", "/p/" .. slug .. "/sign", headers, body)
end

function response(status, headers, body)
  if status ~= 303 then non303 = non303 + 1 end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + (thread:get("non303") or 0) end
  io.write(string.format("bench non303: %d\n", total))
  io.write(string.format("bench tokens: %d\n", #tokens))
end
