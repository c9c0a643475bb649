package redispresence

// Lua scripts. Each runs atomically in one round trip. Time comes from the
// Redis clock (TIME), in milliseconds.

// reportLua replaces a gateway's counts.
// KEYS[1] = the gateway's hash, KEYS[2] = the gateway set.
// ARGV[1] = ttl ms, ARGV[2] = gateway, ARGV[3..] = room, count pairs.
const reportLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call('DEL', KEYS[1])
local n = #ARGV
local i = 3
while i <= n do
  local j = math.min(i + 999, n)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
if n >= 3 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
redis.call('ZADD', KEYS[2], now + ttl, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
return 1
`

// onlineLua sums a room over live gateways.
// KEYS[1] = the gateway set. ARGV[1] = gateway hash prefix, ARGV[2] = room.
const onlineLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local sum = 0
for _, g in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  local c = redis.call('HGET', ARGV[1] .. g, ARGV[2])
  if c then sum = sum + tonumber(c) end
end
return sum
`

// onlineManyLua sums several rooms over live gateways, one HMGET per
// gateway. KEYS[1] = the gateway set. ARGV[1] = gateway hash prefix,
// ARGV[2..] = rooms. Returns the sums in the order of the rooms.
const onlineManyLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local sums = {}
for i = 2, #ARGV do sums[i - 1] = 0 end
for _, g in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  local cs = redis.call('HMGET', ARGV[1] .. g, unpack(ARGV, 2))
  for i, c in ipairs(cs) do
    if c then sums[i] = sums[i] + tonumber(c) end
  end
end
return sums
`

// topLua sums every room over live gateways and returns the top n as a
// flat room, count list, most viewers first, ties by room name.
// KEYS[1] = the gateway set. ARGV[1] = gateway hash prefix, ARGV[2] = n
// (0 or less: all).
const topLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local sum, rooms = {}, {}
for _, g in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  local kv = redis.call('HGETALL', ARGV[1] .. g)
  for i = 1, #kv, 2 do
    local r, c = kv[i], tonumber(kv[i + 1])
    local s = sum[r]
    if s then
      sum[r] = s + c
    else
      sum[r] = c
      rooms[#rooms + 1] = r
    end
  end
end
table.sort(rooms, function(a, b)
  local x, y = sum[a], sum[b]
  if x ~= y then return x > y end
  return a < b
end)
local n = tonumber(ARGV[2])
if n <= 0 or n > #rooms then n = #rooms end
local out = {}
for i = 1, n do
  out[2 * i - 1] = rooms[i]
  out[2 * i] = sum[rooms[i]]
end
return out
`

// refreshLua extends a session if the caller holds it or nobody does.
// KEYS[1] = the session. ARGV[1] = address, ARGV[2] = ttl ms.
// Returns 1 if refreshed, 0 if another address holds it.
const refreshLua = `
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`

// releaseLua deletes a session only if the caller holds it.
// KEYS[1] = the session. ARGV[1] = address.
const releaseLua = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`

// unsetLua deletes a hash field only if it still holds the given value, so
// pruning an expired ban never deletes a ban issued since it was read.
// KEYS[1] = the hash. ARGV[1] = field, ARGV[2] = expected value.
const unsetLua = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
`

// bannedLua reads one field from each of up to two hashes.
// KEYS = the room's and the global ban hash. ARGV[1] = uid.
const bannedLua = `
local out = {}
for i, k in ipairs(KEYS) do
  out[i] = redis.call('HGET', k, ARGV[1])
end
return out
`
