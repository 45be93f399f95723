-- Shared helpers of every Courier store script (prepended to each). KEYS[1] is the user room's
-- key prefix `<prefix>:{E(site):E(room)}:`; every key a script touches starts with it, so the
-- whole script runs on one hash slot. Names inside keys are escaped (E) so that `:`, `{`, `}`
-- and `%` in a site, room, device or event can never make two names share a key.
local base = KEYS[1]
local RECLAIM_MS = 60000

local function esc(s)
  return (string.gsub(s, '[%%:{}]', function(c) return string.format('%%%02X', string.byte(c)) end))
end

-- When Redis may reclaim a device's keys: a minute after its logical expiry, and never before
-- `ttl` of Redis's own time has passed, so a caller whose `now_ms` lags (or a test moving time
-- at will) never sees keys vanish before the store itself decides they expired.
local function reclaim_at(logical_expiry, ttl)
  local t = redis.call('TIME')
  local redis_now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  -- Clamped to 2^53 ms (far future) so the argument stays an exact integer for any ttl.
  return math.min(math.max(logical_expiry, redis_now + ttl) + RECLAIM_MS, 9007199254740991)
end

local function device_key(dev) return base .. 'd:' .. esc(dev) end
local function index_key(dev) return base .. 'x:' .. esc(dev) end
local function queue_key(dev, event) return base .. 'q:' .. esc(dev) .. ':' .. esc(event) end
local devices_key = base .. 'devices'
local groups_key = base .. 'groups'

-- 'absent', 'expired', 'connected' or 'disconnected', plus the recorded fields.
local function device_state(dev, now)
  local f = redis.call('HMGET', device_key(dev), 'conn', 'at', 'ttl', 'sock')
  if not f[1] then return 'absent', f end
  if f[1] == '1' then return 'connected', f end
  local ttl = tonumber(f[3]) or 0
  if ttl > 0 and now > (tonumber(f[2]) or 0) + ttl then return 'expired', f end
  return 'disconnected', f
end

-- Deletes a device, its queues and its registration.
local function forget_device(dev)
  local index = index_key(dev)
  for _, event in ipairs(redis.call('SMEMBERS', index)) do
    redis.call('DEL', queue_key(dev, event))
  end
  redis.call('DEL', index, device_key(dev))
  redis.call('SREM', devices_key, dev)
end

-- The state of a device after forgetting it if it expired.
local function live_state(dev, now)
  local state, f = device_state(dev, now)
  if state == 'expired' then
    forget_device(dev)
    return 'absent', f
  end
  if state == 'absent' then
    -- A device hash reclaimed by Redis leaves its index behind: clean up.
    forget_device(dev)
  end
  return state, f
end

-- Removes the member of `queue` carrying flake id `padded`; true when one was removed.
local function remove_id(dev, event, id, padded)
  local queue = queue_key(dev, event)
  local prefix = padded .. ':'
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', queue, id, id)) do
    if string.sub(member, 1, #prefix) == prefix then
      redis.call('ZREM', queue, member)
      if redis.call('EXISTS', queue) == 0 then
        redis.call('SREM', index_key(dev), event)
      end
      return true
    end
  end
  return false
end

-- Reclamation deadline of the user's shared sets: none while a device is connected or kept
-- forever; otherwise the latest logical expiry of its devices plus the margin.
local function refresh_user_expiry()
  local latest = 0
  for _, dev in ipairs(redis.call('SMEMBERS', devices_key)) do
    local f = redis.call('HMGET', device_key(dev), 'conn', 'at', 'ttl')
    local ttl = tonumber(f[3]) or 0
    if f[1] == '1' or ttl == 0 then
      redis.call('PERSIST', devices_key)
      redis.call('PERSIST', groups_key)
      return
    end
    local expiry = reclaim_at((tonumber(f[2]) or 0) + ttl, ttl)
    if expiry > latest then latest = expiry end
  end
  if latest > 0 then
    redis.call('PEXPIREAT', devices_key, latest)
    redis.call('PEXPIREAT', groups_key, latest)
  end
end
