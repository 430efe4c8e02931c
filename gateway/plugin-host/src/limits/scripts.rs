//! The Lua scripts of the shared backend. Each runs atomically on Redis's clock, so that every
//! replica agrees on a rate's time.

/// Takes, all or none, at least `need` of each limit, and up to `want` where a lease is wanted
/// and the limit has room to spare (at most half of what is left, so that a limit nearly used
/// up is taken a request at a time). Arguments per limit: kind (`r`, `w`, `m`, `s`), need,
/// want, limit, period (ms), burst, slot member prefix, first slot member number, window end
/// (Unix ms). Answers `{granted?, refused index, retry ms}` then, per limit, the units taken,
/// what is left beyond them and the reset in ms.
pub const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
local n = tonumber(ARGV[1])
local out = {1, -1, -1}
local writes = {}
local refused = false
for i = 1, n do
  local b = 1 + (i - 1) * 9
  local kind = ARGV[b + 1]
  local need = tonumber(ARGV[b + 2])
  local want = tonumber(ARGV[b + 3])
  local limit = tonumber(ARGV[b + 4])
  local period = tonumber(ARGV[b + 5])
  local burst = tonumber(ARGV[b + 6])
  local member = ARGV[b + 7]
  local first = tonumber(ARGV[b + 8])
  local wend = tonumber(ARGV[b + 9])
  local key = KEYS[i]
  local granted, remaining, reset, ok, retry = 0, 0, 0, false, -1
  if kind == 'r' then
    local e = period * 1000 / math.max(limit, 1)
    local tat = tonumber(redis.call('GET', key) or now_us)
    if tat < now_us then tat = now_us end
    local cap = burst * e
    if limit == 0 or need > burst then
      remaining = math.min(burst, math.max(0, math.floor((cap - (tat - now_us)) / e)))
      reset = math.ceil((tat - now_us) / 1000)
    elseif tat + need * e - cap > now_us then
      remaining = math.max(0, math.floor((cap - (tat - now_us)) / e))
      reset = math.ceil((tat - now_us) / 1000)
      retry = math.max(1, math.ceil((tat + need * e - cap - now_us) / 1000))
    else
      ok = true
      granted = need
      if want > need then
        local g = math.min(want, math.floor(math.floor((cap - (tat - now_us)) / e) / 2))
        if g > need and tat + g * e - cap <= now_us then granted = g end
      end
      local new_tat = tat + granted * e
      remaining = math.max(0, math.floor((cap - (new_tat - now_us)) / e))
      reset = math.ceil((new_tat - now_us) / 1000)
      writes[#writes + 1] = {'r', key, new_tat, reset + 1}
    end
  elseif kind == 'w' or kind == 'm' then
    local v = tonumber(redis.call('GET', key) or '0')
    reset = math.max(0, wend - now_ms)
    if v + need > limit then
      remaining = math.max(0, limit - v)
      if need <= limit then retry = math.max(1, reset) end
    else
      ok = true
      granted = math.max(need, math.min(want, math.floor((limit - v) / 2)))
      remaining = limit - v - granted
      writes[#writes + 1] = {'w', key, granted, wend}
    end
  else
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
    local used = redis.call('ZCARD', key)
    if used + need > limit then
      remaining = math.max(0, limit - used)
      if need <= limit then retry = 1000 end
    else
      ok = true
      granted = math.max(need, math.min(want, math.floor((limit - used) / 2)))
      remaining = limit - used - granted
      writes[#writes + 1] = {'s', key, member, granted, now_ms + period, period, first}
    end
  end
  out[#out + 1] = granted
  out[#out + 1] = remaining
  out[#out + 1] = reset
  if not ok and not refused then
    refused = true
    out[1] = 0
    out[2] = i - 1
    out[3] = retry
  end
end
if refused then
  for i = 1, n do out[1 + 3 * i] = 0 end
else
  for _, w in ipairs(writes) do
    if w[1] == 'r' then
      redis.call('SET', w[2], string.format('%.3f', w[3]), 'PX', w[4])
    elseif w[1] == 'w' then
      redis.call('INCRBY', w[2], w[3])
      redis.call('PEXPIREAT', w[2], w[4] + 60000)
    else
      for j = 0, w[4] - 1 do redis.call('ZADD', w[2], w[5], w[3] .. ':' .. (w[7] + j)) end
      -- Only ever lengthened: leased slots lapse sooner than held ones and must not take
      -- the others with them.
      if redis.call('PTTL', w[2]) < w[6] + 1000 then redis.call('PEXPIRE', w[2], w[6] + 1000) end
    end
  end
end
return out
";

/// Applies changes to limits: per key an operation and two arguments. `r`: a rate's TAT moves
/// by (units × emission µs); `w`: a count changes by units (never below 0); `d`: the
/// comma-separated slot members are dropped; `n`: they are renewed for another ttl ms. A key
/// that expired meanwhile is left alone.
pub const CHANGE: &str = r"
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
local n = tonumber(ARGV[1])
for i = 1, n do
  local b = 1 + (i - 1) * 3
  local op = ARGV[b + 1]
  local key = KEYS[i]
  if op == 'r' then
    local tat = redis.call('GET', key)
    if tat then
      local nt = tonumber(tat) + tonumber(ARGV[b + 2]) * tonumber(ARGV[b + 3])
      if nt > now_us then
        redis.call('SET', key, string.format('%.3f', nt), 'PX', math.ceil((nt - now_us) / 1000) + 1)
      else
        redis.call('DEL', key)
      end
    end
  elseif op == 'w' then
    if redis.call('EXISTS', key) == 1 then
      if redis.call('INCRBY', key, tonumber(ARGV[b + 2])) < 0 then redis.call('SET', key, 0, 'KEEPTTL') end
    end
  elseif op == 'd' then
    for m in string.gmatch(ARGV[b + 2], '[^,]+') do redis.call('ZREM', key, m) end
  else
    local ttl = tonumber(ARGV[b + 3])
    for m in string.gmatch(ARGV[b + 2], '[^,]+') do redis.call('ZADD', key, now_ms + ttl, m) end
    if redis.call('PTTL', key) < ttl + 1000 then redis.call('PEXPIRE', key, ttl + 1000) end
  end
end
return 1
";
