"""The server-side scripts.  Every state change happens inside one script, so N processes
on M hosts never read-modify-write a bucket from the client side.  Time is the Redis
server's ``TIME``: the callers' monotonic clocks are not comparable across processes.

Numbers travel as strings (``%.17g``): Redis truncates Lua numbers to integers.
"""

from __future__ import annotations

# Shared helpers: server time, a hash read into a table, number formatting.
_PRELUDE = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function fmt(x) if x == nil then return '' end return string.format('%.17g', x) end
local function arg(i) local v = ARGV[i]; if v == nil or v == '' then return nil end return tonumber(v) end
local raw = redis.call('HGETALL', KEYS[1])
local s = {}
for i = 1, #raw, 2 do s[raw[i]] = raw[i + 1] end
local function num(k) local v = s[k]; if v == nil or v == '' then return nil end return tonumber(v) end
"""

#: KEYS[1] limiter hash.  ARGV: op, cfg_rpm, cfg_tpm, burst, ttl_ms, then op arguments.
#: Returns {server_now, rr, rc, rl, tr, tc, tl, cooldown_until, n429, learned, result,
#: peak_remaining}.
LIMITER = _PRELUDE + r"""
local op = ARGV[1]
local crpm, ctpm, burst, ttl = arg(2), arg(3), arg(4), arg(5)
local EPS = 1e-9
local rr, rc, rl = num('rr'), num('rc'), num('rl')
local tr, tc, tl = num('tr'), num('tc'), num('tl')
local ts = num('ts')
local cd, n4, lr = num('cd') or 0, num('n4') or 0, num('lr') or 0
local pk = num('pk') or -1  -- the most requests any response said were left
local dirty = false
if ts == nil then
  -- New, expired, or lost with a server restart: build it from the configuration.
  if crpm then rr = crpm / 60; rc = burst or math.max(1, crpm / 60); rl = rc end
  if ctpm then tr = ctpm / 60; tc = ctpm; tl = tc end
  ts = now; dirty = true
end
if now > ts then
  if rr and rl < rc then rl = math.min(rc, rl + (now - ts) * rr) end
  if tr and tl < tc then tl = math.min(tc, tl + (now - ts) * tr) end
  ts = now
end
local function enough(level, need) return level >= need - EPS * math.max(1, math.abs(need)) end
local function bwait(rate, cap, level, cost)
  local need = math.min(cost, cap)
  if enough(level, need) then return 0 end
  return (need - level) / rate
end
local function wait_for(tokens)
  local w = 0
  if cd > now then w = cd - now end
  if rr then w = math.max(w, bwait(rr, rc, rl, 1)) end
  -- A token bucket in debt (usage under-estimated) holds back even 0-token requests.
  if tr then w = math.max(w, bwait(tr, tc, tl, math.max(0, tokens))) end
  return w
end
local function decayed(rate, amount, elapsed)
  if elapsed == nil then return amount end
  return math.max(0, amount - rate * math.max(0, elapsed))
end
-- The rates and capacities are learned by the client, with the core's own learner (the
-- same code as an in-process limiter's); the script adopts them and applies `remaining`.
local function adopt(rate, cap, level, lrate, lcap, remaining, reset)
  if lrate and lcap then
    if rate == nil then
      if remaining then level = math.min(lcap, math.max(0, remaining)) else level = lcap end
    else
      level = math.min(level, lcap)
    end
    rate = lrate; cap = lcap
  end
  if rate and remaining and remaining < level then level = math.max(0, remaining) end
  if remaining and remaining <= 0 and reset and reset > 0 and rate == nil then
    -- nothing to pace by: wait out the reset
    cd = math.max(cd, now + reset)
  end
  return rate, cap, level
end

local result = nil
if op == 'acquire' then
  local tokens = arg(6) or 0
  result = wait_for(tokens)
  if result <= 0 then
    if rr then rl = rl - 1 end
    if tr and tokens > 0 then tl = tl - tokens end
    dirty = true
  end
elseif op == 'release' then
  local tokens, elapsed = arg(6) or 0, arg(7)
  if rr then rl = math.min(rc, rl + decayed(rr, 1, elapsed)) end
  if tr and tokens > 0 then tl = math.min(tc, tl + decayed(tr, tokens, elapsed)) end
  dirty = true
elseif op == 'reconcile' then
  local delta, elapsed = arg(6) or 0, arg(7)
  if tr then
    if delta > 0 then tl = math.min(tc, tl + decayed(tr, delta, elapsed))
    elseif delta < 0 then tl = tl + delta end
    dirty = true
  end
elseif op == 'observe' then
  -- ARGV 6..13: limit, remaining, reset, window (requests, then tokens); 14..17: the
  -- learned request rate/capacity and token rate/capacity (binding: configured and learned
  -- together); 18: "1" when anything was learned.
  local rem = arg(7)
  if rem and rem > pk then pk = rem end
  rr, rc, rl = adopt(rr, rc, rl, arg(14), arg(15), rem, arg(8))
  tr, tc, tl = adopt(tr, tc, tl, arg(16), arg(17), arg(11), arg(12))
  if arg(18) == 1 then lr = 1 end
  dirty = true
elseif op == 'o429' then
  n4 = n4 + 1
  local ra = arg(6)
  -- ARGV 7..8: the learned request rate/capacity after the refusal (a probe cut)
  if arg(7) and arg(8) then rr, rc, rl = adopt(rr, rc, rl, arg(7), arg(8), nil, nil) end
  local w
  if ra and ra >= 0 then w = ra else w = math.min(60, 2 ^ math.min(n4 - 1, 64)) end
  cd = math.max(cd, now + w)
  if rr and rl > 0 then rl = 0 end
  dirty = true
elseif op == 'ok' then
  if n4 ~= 0 then n4 = 0; dirty = true end
end
if dirty then
  redis.call('HSET', KEYS[1], 'rr', fmt(rr), 'rc', fmt(rc), 'rl', fmt(rl), 'tr', fmt(tr),
             'tc', fmt(tc), 'tl', fmt(tl), 'ts', fmt(ts), 'cd', fmt(cd), 'n4', n4, 'lr', lr,
             'pk', fmt(pk))
  if ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
end
return {fmt(now), fmt(rr), fmt(rc), fmt(rl), fmt(tr), fmt(tc), fmt(tl), fmt(cd), n4, lr, fmt(result),
        fmt(pk)}
"""

#: KEYS[1] breaker hash.  ARGV: op, window_size, minimum_calls, failure_rate_threshold,
#: open_interval, interval_multiplier, max_open_interval, half_open_trials, ttl_ms, epoch,
#: deferred successes, their epoch (successes recorded while CLOSED, sent along with the
#: next call; counted before ``op`` if the breaker is still CLOSED in that epoch).
#: Returns {state_before, state, epoch, open_for, trials_in_flight, trips, failures,
#: calls, transitions (comma-separated "old>new"), result}.
BREAKER = _PRELUDE + r"""
local op = ARGV[1]
local wsize, minc, thr = arg(2), arg(3), arg(4)
local oi, mult, maxi, trials, ttl = arg(5), arg(6), arg(7), arg(8), arg(9)
local epoch_arg = arg(10)
local st = s['st'] or 'closed'
local st0 = st
-- A new breaker starts at an epoch derived from the server clock, so outcomes of calls
-- dispatched before a server restart (or key expiry) cannot match the new epoch.
local ep = num('ep')
local tr, ti, tsu = num('tr') or 0, num('ti') or 0, num('tsu') or 0
local dirty = false
if ep == nil then ep = math.floor(now * 1000) % 1000000000; dirty = true end
local oa, iv, nf = num('oa') or 0, num('iv') or oi, num('nf') or 0
local win = s['win'] or ''
local moves = {}
local function move(new)
  table.insert(moves, st .. '>' .. new)
  st = new; ep = ep + 1; ti = 0; tsu = 0; dirty = true
  if new == 'open' then
    tr = tr + 1
    local x = oi * mult ^ (tr - 1)
    if x ~= x or x > maxi then x = maxi end
    iv = x; oa = now
  elseif new == 'closed' then
    tr = 0; win = ''; nf = 0
  end
end
local function state()
  if st == 'open' and now >= oa + iv then move('half_open') end
  return st
end
local function current(cur, e)
  if e ~= nil then
    if e ~= ep then return false end
    if cur == 'half_open' and ti > 0 then ti = ti - 1; dirty = true end
    return cur ~= 'open'
  end
  if cur == 'closed' then return true end
  if cur == 'half_open' and ti > 0 then ti = ti - 1; dirty = true; return true end
  return false
end
local function add(failure)
  if failure then win = win .. '1'; nf = nf + 1 else win = win .. '0' end
  if #win > wsize then
    win = string.sub(win, -wsize)
    local _, n = string.gsub(win, '1', '')
    nf = n
  end
  dirty = true
  if #win >= minc and nf > 0 and nf / #win >= thr then move('open') end
end

local cur = state()
local deferred, deferred_epoch = arg(11), arg(12)
if deferred and deferred > 0 and cur == 'closed' and deferred_epoch == ep then
  for _ = 1, math.min(deferred, wsize) do add(false) end
end
local result = ''
if op == 'dispatch' then
  if cur == 'half_open' then ti = ti + 1; dirty = true end
  result = ep
elseif op == 'success' then
  if current(cur, epoch_arg) then
    if cur == 'closed' then add(false)
    elseif cur == 'half_open' then
      tsu = tsu + 1; dirty = true
      if tsu >= trials then move('closed') end
    end
  end
elseif op == 'failure' then
  if current(cur, epoch_arg) then
    if cur == 'closed' then add(true) elseif cur == 'half_open' then move('open') end
  end
elseif op == 'neutral' then
  if current(cur, epoch_arg) then
    if cur == 'closed' then add(false) end
  end
end
if dirty then
  redis.call('HSET', KEYS[1], 'st', st, 'ep', ep, 'tr', tr, 'ti', ti, 'tsu', tsu,
             'oa', fmt(oa), 'iv', fmt(iv), 'nf', nf, 'win', win)
  if ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
end
local open_for = 0
if st == 'open' then open_for = math.max(0, oa + iv - now) end
return {st0, st, ep, fmt(open_for), ti, tr, nf, #win, table.concat(moves, ','), tostring(result)}
"""
