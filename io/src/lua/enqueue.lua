-- Enqueue. ARGV: event, member ("<20-digit id>:<json>"), now_ms, n_groups (-1: not reached
-- through groups), groups...
-- Returns { status ("stored"/"unknown"/"not_in_groups"), device1, socket1 or "", ... }.
local event, member, now, n_groups = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local live = {}
for _, dev in ipairs(redis.call('SMEMBERS', devices_key)) do
  local state, f = live_state(dev, now)
  if state ~= 'absent' then table.insert(live, { dev, state, f }) end
end
if #live == 0 then
  redis.call('DEL', groups_key)
  return { 'unknown' }
end
if n_groups >= 0 then
  local member_of = false
  for i = 5, 4 + n_groups do
    if redis.call('SISMEMBER', groups_key, ARGV[i]) == 1 then member_of = true break end
  end
  if not member_of then return { 'not_in_groups' } end
end
local id = string.sub(member, 1, 20)
local out = { 'stored' }
for _, d in ipairs(live) do
  local dev, state, f = d[1], d[2], d[3]
  local queue = queue_key(dev, event)
  redis.call('ZADD', queue, id, member)
  redis.call('SADD', index_key(dev), event)
  local ttl = tonumber(f[3]) or 0
  if state == 'disconnected' and ttl > 0 then
    local reclaim = reclaim_at((tonumber(f[2]) or 0) + ttl, ttl)
    redis.call('PEXPIREAT', queue, reclaim)
    redis.call('PEXPIREAT', index_key(dev), reclaim)
  end
  table.insert(out, dev)
  -- A draining device gets the item through its backlog, not live.
  if state == 'connected' and f[5] ~= '1' then table.insert(out, f[4]) else table.insert(out, '') end
end
return out
