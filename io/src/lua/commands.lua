-- The store commands of one shard, run in the order given (appended to common.lua). After the
-- liveness arguments are taken off, the arguments are a sequence of `op, n, <n arguments>`; the
-- reply is one result per command, in order. Each command reads its arguments in place,
-- `a[o + 1] … a[o + n]` (no table per command); the first is the user's key base `ub`
-- (`<prefix>:{E(site):<shard>}:E(room):`).

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
local function connect(a, o, n)
  local ub, dev, sock, now = a[o + 1], a[o + 2], a[o + 3], tonumber(a[o + 4])
  local max_items, max_bytes, import_known, has_groups =
    tonumber(a[o + 5]), tonumber(a[o + 6]), a[o + 7], a[o + 8]
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
  if has_groups == '1' and n > 8 then
    local fields = {}
    for i = o + 9, o + n do
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
local function next_batch(a, o, n)
  local ub, dev, sock, now = a[o + 1], a[o + 2], a[o + 3], tonumber(a[o + 4])
  local max_items, max_bytes = tonumber(a[o + 5]), tonumber(a[o + 6])
  local state, st = live_state(ub, dev, redis.call('HGET', user_key(ub), 'd:' .. dev), now)
  if state == 'absent' then return { '0' } end
  local edev = esc(dev)
  for i = o + 7, o + n - 1, 2 do
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
local function disconnect(a, o)
  local ub, dev, sock, now, ttl =
    a[o + 1], a[o + 2], a[o + 3], tonumber(a[o + 4]), tonumber(a[o + 5])
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
local function set_message(a, o)
  local n_groups = tonumber(a[o + 4])
  -- The groups as the user hash's field names (`g:<group>`), so the membership check of each
  -- Enqueue needs no string of its own.
  local groups = nil
  if n_groups >= 0 then
    groups = {}
    for i = o + 5, o + 4 + n_groups do groups['g:' .. a[i]] = true end
  end
  message = { eevent = esc(a[o + 1]), member = a[o + 2], now = tonumber(a[o + 3]),
    groups = groups }
  return 0
end

-- Enqueue: ub, of the message set last. Returns { status ("stored"/"unknown"/"not_in_groups"),
-- device1, socket1 or "", ... }.
local function enqueue(a, o)
  local m = message
  local ub, eevent, member, now, groups = a[o + 1], m.eevent, m.member, m.now, m.groups
  local ukey = user_key(ub)
  -- One pass over the user hash: the live devices (forgetting expired ones) and, when the
  -- message came through groups, whether one of them is among the user's. `live` holds 5
  -- values per live device: name, parsed state (false for a device connected through a live
  -- node, whose state is read only in part: `connected_fields`), its socket for the reply ('' when
  -- not delivered live), its events, its state text.
  local flat = redis.call('HGETALL', ukey)
  local live, n_live, member_of = {}, 0, groups == nil
  for i = 1, #flat, 2 do
    local field = flat[i]
    local kind = string.byte(field, 1)
    if kind == 100 then -- 'd:<device>'
      local dev, text = string.sub(field, 3), flat[i + 1]
      local drn, sock, events = connected_fields(text)
      local k = 5 * n_live
      if drn then
        n_live = n_live + 1
        live[k + 1], live[k + 2], live[k + 4], live[k + 5] = dev, false, events, text
        -- A draining device gets the item through its backlog, not live.
        if drn == '1' then live[k + 3] = '' else live[k + 3] = sock end
      else
        local state, st = live_state(ub, dev, text, now)
        if state ~= 'absent' then
          n_live = n_live + 1
          live[k + 1], live[k + 2], live[k + 4] = dev, st, st.ev
          if state == 'connected' and not st.drn then live[k + 3] = st.sock else live[k + 3] = '' end
        end
      end
    elseif kind == 103 and not member_of then -- 'g:<group>'
      member_of = groups[field] == true
    end
  end
  if n_live == 0 then
    redis.call('DEL', ukey)
    return { 'unknown' }
  end
  if not member_of then return { 'not_in_groups' } end
  local out = { 'stored' }
  for n = 1, n_live do
    local k = 5 * (n - 1)
    local dev, st = live[k + 1], live[k + 2]
    local queue = queue_key(ub, esc(dev), eevent)
    redis.call('ZADD', queue, 0, member)
    -- The state is rewritten only for a new event (its list of queues grows).
    if live[k + 4] ~= eevent then
      if not st then st = parse_state(live[k + 5]) end
      if add_event(st, eevent) then save_state(ub, dev, st) end
    end
    if st and st.conn ~= '1' and st.ttl > 0 then
      local reclaim = reclaim_at(st.at + st.ttl, st.ttl)
      redis.call('PEXPIREAT', queue, reclaim)
      -- The user hash (which lists this queue) never goes before the queue.
      redis.call('PEXPIREAT', ukey, reclaim, 'GT')
    end
    out[2 * n] = dev
    out[2 * n + 1] = live[k + 3]
  end
  return out
end

-- Ack: ub, device, event, padded id, resync ("1"/"0"), now.
-- Returns "removed", "kept" or "resync".
local function ack(a, o)
  local ub, dev, event, padded, resync = a[o + 1], a[o + 2], a[o + 3], a[o + 4], a[o + 5]
  -- Read for its effects only (an expired device is forgotten, so nothing is removed below).
  local text = redis.call('HGET', user_key(ub), 'd:' .. dev)
  if not connected_fields(text) then live_state(ub, dev, text, tonumber(a[o + 6])) end
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
local function ack_batch(a, o, n)
  local ub, dev = a[o + 1], a[o + 2]
  local text = redis.call('HGET', user_key(ub), 'd:' .. dev)
  if not connected_fields(text) then live_state(ub, dev, text, tonumber(a[o + 3])) end
  local edev = esc(dev)
  local removed = 0
  for i = o + 4, o + n - 1, 2 do
    if remove_id(queue_key(ub, edev, esc(a[i])), a[i + 1]) then removed = removed + 1 end
  end
  return removed
end

-- Import (the original's lists of one device, after its Connect): ub, device, then (event,
-- member) pairs. Marks the device imported. Returns the number of items added, or -1 when the
-- device has no state any more (the caller then leaves the lists for its next connect).
local function import(a, o, n)
  local ub, dev = a[o + 1], a[o + 2]
  local st = parse_state(redis.call('HGET', user_key(ub), 'd:' .. dev) or '')
  if not st then return -1 end
  local edev = esc(dev)
  local added = 0
  for i = o + 3, o + n - 1, 2 do
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

-- One call: the commands of one shard (`keys[1]` is its key base, named so that Redis Cluster
-- routes the call), then the liveness arguments. Answers one result per command, in order.
local function run(keys, argv)
  begin_call(argv)
  message = nil
  local results, n_results = {}, 0
  local i, n_argv = 1, #argv
  while i <= n_argv do
    local op, n = argv[i], tonumber(argv[i + 1])
    local result = handlers[op](argv, i + 1, n)
    -- `M` answers nothing: it is not a command of the batch.
    if op ~= 'M' then
      n_results = n_results + 1
      results[n_results] = result
    end
    i = i + 2 + n
  end
  return results
end
