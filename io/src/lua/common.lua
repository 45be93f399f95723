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

-- 'absent', 'expired', 'connected' or 'disconnected', plus the recorded fields
-- (conn, at, ttl, sock, drn: '1' while a connected device is draining its backlog).
local function device_state(dev, now)
  local f = redis.call('HMGET', device_key(dev), 'conn', 'at', 'ttl', 'sock', 'drn')
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

-- Appends the next `_batch` piece of a device to `out` as (event, member) pairs: the head of
-- its queues in flake-id order across events (ties by event name), at most `max_items` items
-- and `max_bytes` bytes of items (JSON length + 1 each), never empty while anything is queued
-- (courier_core::gateway::batch::BatchLimits::admits). A merge that reads one member ahead per
-- event, so it never loads more than the piece. Returns true when items remain after it.
local function read_piece(dev, max_items, max_bytes, out)
  local events = redis.call('SMEMBERS', index_key(dev))
  table.sort(events)
  local heads, pos = {}, {}
  for i, event in ipairs(events) do
    pos[i] = 0
    heads[i] = redis.call('ZRANGE', queue_key(dev, event), 0, 0)[1]
  end
  local count, bytes = 0, 0
  while true do
    local best = nil
    for i = 1, #events do
      local head = heads[i]
      if head and (not best or string.sub(head, 1, 20) < string.sub(heads[best], 1, 20)) then
        best = i
      end
    end
    if not best then return false end
    local member = heads[best]
    local len = #member - 21
    if count > 0 and (count >= max_items or bytes + len + 1 > max_bytes) then return true end
    count = count + 1
    bytes = bytes + len + 1
    table.insert(out, events[best])
    table.insert(out, member)
    pos[best] = pos[best] + 1
    heads[best] = redis.call('ZRANGE', queue_key(dev, events[best]), pos[best], pos[best])[1]
  end
end

-- Sets or clears the draining mark of a connected device.
local function set_draining(dev, draining)
  if draining then
    redis.call('HSET', device_key(dev), 'drn', '1')
  else
    redis.call('HDEL', device_key(dev), 'drn')
  end
end
