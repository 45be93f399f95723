-- The shared part of Courier's store script: state of one user, expiry, queues. Every call of
-- the script runs the commands of one shard (KEYS[1] = `<prefix>:{E(site):<shard>}:`); each
-- command names the user's key base `<KEYS[1]>E(room):` (built by the store, so the room is
-- never escaped here), and every key touched starts with KEYS[1]: one hash slot per call.
-- Names inside keys are escaped (E) so that `:`, `{`, `}` and `%` in a site, room, device or
-- event can never make two names share a key. Layout: io/REDIS-LAYOUT.md.
-- The library's top level runs once when Redis loads it (FUNCTION LOAD); every call then runs
-- `run` (commands.lua), which starts with `begin_call`. Globals are read once into locals (a
-- function reads them on every use otherwise), at the first call: while a library loads, Redis
-- offers it none of them.
local function call_globals()
  return redis, string, table, math, tonumber, ipairs, pairs, unpack
end
local redis, string, table, math, tonumber, ipairs, pairs, unpack
local RECLAIM_MS = 60000

-- Node liveness, appended by the store to the arguments and taken off by `begin_call`: (node
-- id, last heartbeat ms) pairs of the nodes known dead, their count, the registry horizon (ms)
-- and the device_ttl (ms) a device of a dead node gets. A script cannot read the node registry
-- (another hash slot), so the store passes what its node last read from it.
local NODE_TIME_UNIT = 4194304 -- node ids carry their start time (Unix ms) above the low 22 bits
-- State of the call being run. The library's locals outlive a call, so `begin_call` resets
-- every one of them: nothing of one call may leak into the next.
local dead_nodes, node_ttl, node_horizon = {}, 0, 0
local alive_nodes = nil -- node ids found alive by the horizon rule during this call
-- Redis's own clock (ms), read at most once per call.
local redis_now_ms = nil

-- Takes the liveness arguments off the end of `argv` and forgets the previous call's state.
local NO_DEAD_NODES = {} -- never written: the common case needs no table per call
local function begin_call(argv)
  if not redis then
    redis, string, table, math, tonumber, ipairs, pairs, unpack = call_globals()
  end
  redis_now_ms = nil
  alive_nodes = nil
  dead_nodes = NO_DEAD_NODES
  node_ttl = tonumber(table.remove(argv)) or 0
  node_horizon = tonumber(table.remove(argv)) or 0
  local n_dead = tonumber(table.remove(argv)) or 0
  if n_dead > 0 then dead_nodes = {} end
  for _ = 1, n_dead do
    local heartbeat = table.remove(argv)
    dead_nodes[table.remove(argv)] = tonumber(heartbeat)
  end
end

-- Since when the node `node` (its id, decimal) is dead, or nil while it may be alive: a node
-- the registry lists as dead died at its last heartbeat; a node the registry no longer lists
-- although it started before the registry's horizon was pruned from it long ago (its last
-- heartbeat is older than the horizon, so the horizon bounds it).
local function node_id_dead_since(node)
  if not node then return nil end
  local since = dead_nodes[node]
  if since then return since end
  if node_horizon > 0 then
    -- A call meets few nodes and many devices: each id is converted to a number once.
    if alive_nodes and alive_nodes[node] then return nil end
    if math.floor(tonumber(node) / NODE_TIME_UNIT) < node_horizon then return node_horizon end
    if not alive_nodes then alive_nodes = {} end
    alive_nodes[node] = true
  end
  return nil
end

-- Since when the node of socket `sock` ("<node>:<socket>") is dead, or nil.
local function node_dead_since(sock)
  return node_id_dead_since(string.match(sock or '', '^(%d+):'))
end

-- For a device whose state text says connected through a node not known dead — the common
-- case of an enqueue and an acknowledgement — its `drn`, `sock` and `events` (see `parse_state`),
-- read by one match without building the whole state; nil otherwise.
local function connected_fields(text)
  if not text or string.byte(text, 1) ~= 49 then return nil end -- '1'
  local drn, sock, node, events =
    string.match(text, '^1|%d*|%d*|(%d?)|%d?|((%d+):[^|]*)|(.*)$')
  if not drn or node_id_dead_since(node) ~= nil then return nil end
  return drn, sock, events
end

local function esc(s)
  if not string.find(s, '[%%:{}]') then return s end
  return (string.gsub(s, '[%%:{}]', function(c) return string.format('%%%02X', string.byte(c)) end))
end

local function unesc(s)
  if not string.find(s, '%', 1, true) then return s end
  return (string.gsub(s, '%%(%x%x)', function(h) return string.char(tonumber(h, 16)) end))
end

local function redis_now()
  if not redis_now_ms then
    local t = redis.call('TIME')
    redis_now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return redis_now_ms
end

-- When Redis may reclaim a device's keys: a minute after its logical expiry, and never before
-- `ttl` of Redis's own time has passed, so a caller whose `now_ms` lags (or a test moving time
-- at will) never sees keys vanish before the store itself decides they expired.
local function reclaim_at(logical_expiry, ttl)
  -- Clamped to 2^53 ms (far future) so the argument stays an exact integer for any ttl.
  return math.min(math.max(logical_expiry, redis_now() + ttl) + RECLAIM_MS, 9007199254740991)
end

local function user_key(ub) return ub .. 'u' end
local function queue_key(ub, edev, eevent) return ub .. 'q:' .. edev .. ':' .. eevent end

-- A device's state, one field `d:<device>` of the user hash:
-- `conn|at|ttl|drn|imp|sock|events` — conn `1`/`0`; at = disconnect time (ms); ttl = device_ttl
-- (ms) given at that disconnect (0: keep); drn `1` while a connected device drains its backlog;
-- imp `1` once the original's lists were imported; sock = latest socket "<node>:<socket>";
-- events = E(event) of its queues joined by `:` (a superset: an emptied queue stays listed
-- until a read of the backlog finds it empty, so acks never rewrite the state).
local function parse_state(text)
  local conn, at, ttl, drn, imp, sock, events =
    string.match(text, '^(%d)|(%d*)|(%d*)|(%d?)|(%d?)|([^|]*)|(.*)$')
  if not conn then return nil end
  local st = { conn = conn, at = tonumber(at) or 0, ttl = tonumber(ttl) or 0, drn = drn == '1',
    imp = imp == '1', sock = sock, ev = events }
  return st
end

local function pack_state(st)
  -- `%.0f`: times are doubles here, exact below 2^53 and never negative (`%d` overflows past 2^63).
  return table.concat({ st.conn, string.format('%.0f', st.at), string.format('%.0f', st.ttl),
    st.drn and '1' or '0', st.imp and '1' or '0', st.sock, st.ev }, '|')
end

local function save_state(ub, dev, st)
  redis.call('HSET', user_key(ub), 'd:' .. dev, pack_state(st))
end

-- Lists `eevent` among the device's queues; true when it was not listed yet.
local function add_event(st, eevent)
  -- The common case first (one event per device), without building the strings below.
  if st.ev == eevent then return false end
  if st.ev == '' then
    st.ev = eevent
    return true
  end
  if string.find(':' .. st.ev .. ':', ':' .. eevent .. ':', 1, true) then return false end
  st.ev = st.ev .. ':' .. eevent
  return true
end

-- The device's events (E(event) each), split from the state only when needed.
local function events_of(st)
  local events = {}
  for e in string.gmatch(st.ev, '[^:]+') do events[#events + 1] = e end
  return events
end

-- Marks a device disconnected at `at` with `ttl` (saved), and when Redis may reclaim its queues.
local function mark_disconnected(ub, dev, st, at, ttl)
  st.conn, st.at, st.ttl, st.drn = '0', at, ttl, false
  save_state(ub, dev, st)
  if ttl > 0 then
    local reclaim = reclaim_at(at + ttl, ttl)
    local edev = esc(dev)
    for _, e in ipairs(events_of(st)) do
      redis.call('PEXPIREAT', queue_key(ub, edev, e), reclaim)
    end
  end
end

-- Deletes a device's queues and its state.
local function forget_device(ub, dev, st)
  local edev = esc(dev)
  for _, e in ipairs(events_of(st)) do
    redis.call('DEL', queue_key(ub, edev, e))
  end
  redis.call('HDEL', user_key(ub), 'd:' .. dev)
end

-- 'absent', 'connected' or 'disconnected' for a device whose state text is `text` (nil when
-- it has none), forgetting it when it expired. A connected device whose socket's node is dead
-- is disconnected since that node's last heartbeat (recorded so, once).
local function live_state(ub, dev, text, now)
  if not text then return 'absent', nil end
  local st = parse_state(text)
  if not st then
    redis.call('HDEL', user_key(ub), 'd:' .. dev)
    return 'absent', nil
  end
  if st.conn == '1' then
    local since = node_dead_since(st.sock)
    if not since then return 'connected', st end
    mark_disconnected(ub, dev, st, since, node_ttl)
  end
  if st.ttl > 0 and now > st.at + st.ttl then
    forget_device(ub, dev, st)
    return 'absent', nil
  end
  return 'disconnected', st
end

-- The user hash as { devices = { [dev] = state text }, groups = { [group] = true }, order = {
-- devices } } (in the hash's order: results are sorted by the store).
local function read_user(ub)
  local flat = redis.call('HGETALL', user_key(ub))
  local devices, groups, order = {}, {}, {}
  for i = 1, #flat, 2 do
    local field = flat[i]
    local kind = string.byte(field, 1)
    if kind == 100 then -- 'd:<device>'
      local name = string.sub(field, 3)
      devices[name] = flat[i + 1]
      order[#order + 1] = name
    elseif kind == 103 then -- 'g:<group>'
      groups[string.sub(field, 3)] = true
    end
  end
  return { devices = devices, groups = groups, order = order }
end

-- Removes the member of a queue carrying flake id `padded` (20 digits); true when one was
-- removed. Every member has score 0, so the queue is ordered by member and the members of one
-- id are exactly the range ["<padded>:", "<padded>;") (`;` follows `:`): one command, no read.
-- A queue holds at most one member per id (a `/send` has one id and one body).
local function remove_id(queue, padded)
  return redis.call('ZREMRANGEBYLEX', queue, '[' .. padded .. ':', '(' .. padded .. ';') > 0
end

-- Reclamation deadline of the user hash: none while a device is connected or kept forever;
-- otherwise the latest reclamation deadline of its devices.
local function refresh_user_expiry(ub, user)
  local latest = 0
  for _, dev in ipairs(user.order) do
    local st = parse_state(user.devices[dev])
    if st then
      if st.conn == '1' or st.ttl == 0 then
        redis.call('PERSIST', user_key(ub))
        return
      end
      local expiry = reclaim_at(st.at + st.ttl, st.ttl)
      if expiry > latest then latest = expiry end
    end
  end
  if latest > 0 then redis.call('PEXPIREAT', user_key(ub), latest) end
end

-- Appends the next `_batch` piece of a device to `out` as (event, member) pairs: the head of
-- its queues in flake-id order across events (ties by event name), at most `max_items` items
-- and `max_bytes` bytes of items (JSON length + 1 each), never empty while anything is queued
-- (courier_core::gateway::batch::BatchLimits::admits). A merge that reads one member ahead per
-- event, so it never loads more than the piece. Drops events whose queue is empty from the
-- state (the caller saves it). Returns true when items remain after the piece.
local function read_piece(ub, dev, st, max_items, max_bytes, out)
  local edev = esc(dev)
  local events, heads, pos, kept = {}, {}, {}, {}
  for _, e in ipairs(events_of(st)) do
    local head = redis.call('ZRANGE', queue_key(ub, edev, e), 0, 0)[1]
    if head then
      kept[#kept + 1] = e
      events[#events + 1] = { raw = unesc(e), e = e, head = head }
    end
  end
  st.ev = table.concat(kept, ':')
  table.sort(events, function(a, b) return a.raw < b.raw end)
  for i, ev in ipairs(events) do
    pos[i] = 0
    heads[i] = ev.head
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
    out[#out + 1] = events[best].raw
    out[#out + 1] = member
    pos[best] = pos[best] + 1
    heads[best] = redis.call('ZRANGE', queue_key(ub, edev, events[best].e), pos[best], pos[best])[1]
  end
end
