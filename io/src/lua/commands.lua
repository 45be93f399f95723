-- The store commands of one shard, run in the order given (appended to common.lua). After the
-- liveness arguments are taken off, ARGV is a sequence of `op, n, <n arguments>`; the reply is
-- one result per command, in order. The first argument of every command is the user's key base
-- `ub` (`<prefix>:{E(site):<shard>}:E(room):`).

local function clear_groups(ub, user)
  local fields = {}
  for g in pairs(user.groups) do fields[#fields + 1] = 'g:' .. g end
  if #fields > 0 then redis.call('HDEL', user_key(ub), unpack(fields)) end
end

-- Connect: ub, device, socket, now, max_items, max_bytes, import_known ("1": no legacy lists
-- exist, so a new device needs no import), has_groups ("1"/"0"), groups...
-- Returns { imported ("1"/"0"), more ("1"/"0"), event1, member1, ... } (the first piece). A
-- device not imported yet is left draining with no piece: the store imports its lists, then
-- reads the first piece with a NextBatch.
local function connect(a)
  local ub, dev, sock, now = a[1], a[2], a[3], tonumber(a[4])
  local max_items, max_bytes, import_known, has_groups =
    tonumber(a[5]), tonumber(a[6]), a[7], a[8]
  local ukey = user_key(ub)
  -- The user's record (its groups) lives as long as one of its devices does: if every device
  -- has expired, the user is absent and its recorded groups go with it.
  local user = read_user(ub)
  local user_present, own = false, nil
  for _, other in ipairs(user.order) do
    local state, st = live_state(ub, other, user.devices[other], now)
    if state ~= 'absent' then user_present = true end
    if other == dev then own = st end
  end
  if has_groups == '1' or not user_present then clear_groups(ub, user) end
  if has_groups == '1' and #a > 8 then
    local fields = {}
    for i = 9, #a do
      fields[#fields + 1] = 'g:' .. a[i]
      fields[#fields + 1] = '1'
    end
    redis.call('HSET', ukey, unpack(fields))
  end
  if not own then
    own = { conn = '1', at = 0, ttl = 0, drn = false, imp = import_known == '1', sock = sock,
      ev = '' }
  end
  own.conn, own.sock, own.at, own.ttl = '1', sock, 0, 0
  redis.call('PERSIST', ukey)
  local edev = esc(dev)
  for _, e in ipairs(events_of(own)) do
    redis.call('PERSIST', queue_key(ub, edev, e))
  end
  if not own.imp then
    own.drn = true
    save_state(ub, dev, own)
    return { '0', '1' }
  end
  local out = { '1', '0' }
  local more = read_piece(ub, dev, own, max_items, max_bytes, out)
  own.drn = more
  save_state(ub, dev, own)
  if more then out[2] = '1' end
  return out
end

-- NextBatch: ub, device, socket, now, max_items, max_bytes, then (event, padded id) pairs
-- of the acknowledged piece. Returns { more ("1"/"0"), event1, member1, ... }: the next
-- piece when the device is connected through `socket` and draining (cleared when nothing
-- remains after it), else nothing.
local function next_batch(a)
  local ub, dev, sock, now = a[1], a[2], a[3], tonumber(a[4])
  local max_items, max_bytes = tonumber(a[5]), tonumber(a[6])
  local state, st = live_state(ub, dev, redis.call('HGET', user_key(ub), 'd:' .. dev), now)
  if state == 'absent' then return { '0' } end
  local edev = esc(dev)
  for i = 7, #a - 1, 2 do
    remove_id(queue_key(ub, edev, esc(a[i])), a[i + 1])
  end
  if state ~= 'connected' or st.sock ~= sock or not st.drn then return { '0' } end
  local out = { '0' }
  local more = read_piece(ub, dev, st, max_items, max_bytes, out)
  st.drn = more
  save_state(ub, dev, st)
  if more then out[1] = '1' end
  return out
end

-- Disconnect: ub, device, socket, now, ttl. Returns 1 when the device was marked. Only the
-- latest socket of a connected device disconnects it (the model's rule): a repeated disconnect
-- never moves the recorded time or ttl.
local function disconnect(a)
  local ub, dev, sock, now, ttl = a[1], a[2], a[3], tonumber(a[4]), tonumber(a[5])
  local user = read_user(ub)
  local state, st = live_state(ub, dev, user.devices[dev], now)
  if state ~= 'connected' or st.sock ~= sock then return 0 end
  mark_disconnected(ub, dev, st, now, ttl)
  user.devices[dev] = pack_state(st)
  refresh_user_expiry(ub, user)
  return 1
end

-- The message the following Enqueues store (a `/send` to many users of one shard passes it
-- once): event, member ("<20-digit id>:<json>"), now, n_groups (-1: not reached through
-- groups), groups... Returns 0.
local message = nil
local function set_message(a)
  message = a
  return 0
end

-- Enqueue: ub, of the message set last. Returns { status ("stored"/"unknown"/"not_in_groups"),
-- device1, socket1 or "", ... }.
local function enqueue(a)
  local m = message
  local ub, event, member, now, n_groups = a[1], m[1], m[2], tonumber(m[3]), tonumber(m[4])
  local user = read_user(ub)
  local live = {}
  for _, dev in ipairs(user.order) do
    local state, st = live_state(ub, dev, user.devices[dev], now)
    if state ~= 'absent' then live[#live + 1] = { dev, state, st } end
  end
  local ukey = user_key(ub)
  if #live == 0 then
    redis.call('DEL', ukey)
    return { 'unknown' }
  end
  if n_groups >= 0 then
    local member_of = false
    for i = 5, 4 + n_groups do
      if user.groups[m[i]] then member_of = true break end
    end
    if not member_of then return { 'not_in_groups' } end
  end
  local eevent = esc(event)
  local out = { 'stored' }
  for _, d in ipairs(live) do
    local dev, state, st = d[1], d[2], d[3]
    local queue = queue_key(ub, esc(dev), eevent)
    redis.call('ZADD', queue, 0, member)
    if add_event(st, eevent) then save_state(ub, dev, st) end
    if state == 'disconnected' and st.ttl > 0 then
      local reclaim = reclaim_at(st.at + st.ttl, st.ttl)
      redis.call('PEXPIREAT', queue, reclaim)
      -- The user hash (which lists this queue) never goes before the queue.
      redis.call('PEXPIREAT', ukey, reclaim, 'GT')
    end
    out[#out + 1] = dev
    -- A draining device gets the item through its backlog, not live.
    if state == 'connected' and not st.drn then out[#out + 1] = st.sock else out[#out + 1] = '' end
  end
  return out
end

-- Ack: ub, device, event, padded id, resync ("1"/"0"), now.
-- Returns "removed", "kept" or "resync".
local function ack(a)
  local ub, dev, event, padded, resync, now = a[1], a[2], a[3], a[4], a[5], tonumber(a[6])
  live_state(ub, dev, redis.call('HGET', user_key(ub), 'd:' .. dev), now)
  local queue = queue_key(ub, esc(dev), esc(event))
  if resync ~= '1' then
    if remove_id(queue, padded) then return 'removed' end
    return 'kept'
  end
  local head = redis.call('ZRANGE', queue, 0, 0)[1]
  if head and string.sub(head, 1, #padded + 1) == padded .. ':' then
    redis.call('ZREM', queue, head)
    return 'removed'
  end
  redis.call('DEL', queue)
  return 'resync'
end

-- AckBatch: ub, device, now, then (event, padded id) pairs. Returns the number removed.
local function ack_batch(a)
  local ub, dev, now = a[1], a[2], tonumber(a[3])
  live_state(ub, dev, redis.call('HGET', user_key(ub), 'd:' .. dev), now)
  local edev = esc(dev)
  local removed = 0
  for i = 4, #a - 1, 2 do
    if remove_id(queue_key(ub, edev, esc(a[i])), a[i + 1]) then removed = removed + 1 end
  end
  return removed
end

-- Import (the original's lists of one device, after its Connect): ub, device, then (event,
-- member) pairs. Marks the device imported. Returns the number of items added, or -1 when the
-- device has no state any more (the caller then leaves the lists for its next connect).
local function import(a)
  local ub, dev = a[1], a[2]
  local st = parse_state(redis.call('HGET', user_key(ub), 'd:' .. dev) or '')
  if not st then return -1 end
  local edev = esc(dev)
  local added = 0
  for i = 3, #a - 1, 2 do
    local eevent, member = esc(a[i]), a[i + 1]
    added = added + redis.call('ZADD', queue_key(ub, edev, eevent), 0, member)
    add_event(st, eevent)
  end
  st.imp = true
  save_state(ub, dev, st)
  return added
end

local handlers = { C = connect, N = next_batch, D = disconnect, M = set_message, E = enqueue,
  A = ack, B = ack_batch, I = import }
local results = {}
local i, n_argv = 1, #ARGV
while i <= n_argv do
  local op, n = ARGV[i], tonumber(ARGV[i + 1])
  local result = handlers[op]({ unpack(ARGV, i + 2, i + 1 + n) })
  -- `M` answers nothing: it is not a command of the batch.
  if op ~= 'M' then results[#results + 1] = result end
  i = i + 2 + n
end
return results
