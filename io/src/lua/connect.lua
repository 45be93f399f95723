-- Connect. ARGV: device, socket ("<node>:<socket>"), now_ms, max_items, max_bytes,
-- has_groups ("1"/"0"), groups...
-- Returns: { imported ("1"/"0"), n_old_groups, old_groups..., more ("1"/"0"), event1, member1,
-- event2, ... } where old_groups are the groups recorded before (only when has_groups) and the
-- pairs are the first `_batch` piece. A device not imported yet from the original's layout is
-- left draining with no piece: the caller imports, then reads the first piece (next_batch.lua).
local dev, sock, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local max_items, max_bytes, has_groups = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
-- The user's record (its groups) lives as long as one of its devices does: if every device has
-- expired, the user is absent and its recorded groups go with it.
local old = redis.call('SMEMBERS', groups_key)
local user_present = false
for _, other in ipairs(redis.call('SMEMBERS', devices_key)) do
  if live_state(other, now) ~= 'absent' then user_present = true end
end
live_state(dev, now)
if not user_present then redis.call('DEL', groups_key) end
local dkey = device_key(dev)
redis.call('HSET', dkey, 'sock', sock, 'conn', '1')
redis.call('HDEL', dkey, 'at', 'ttl')
redis.call('PERSIST', dkey)
redis.call('SADD', devices_key, dev)
redis.call('PERSIST', devices_key)
local out = { redis.call('HGET', dkey, 'imp') or '0' }
if has_groups == '1' then
  table.insert(out, tostring(#old))
  for _, g in ipairs(old) do table.insert(out, g) end
  redis.call('DEL', groups_key)
  if #ARGV > 6 then redis.call('SADD', groups_key, unpack(ARGV, 7)) end
else
  table.insert(out, '0')
end
redis.call('PERSIST', groups_key)
local index = index_key(dev)
redis.call('PERSIST', index)
for _, event in ipairs(redis.call('SMEMBERS', index)) do
  redis.call('PERSIST', queue_key(dev, event))
end
if out[1] ~= '1' then
  set_draining(dev, true)
  table.insert(out, '1')
  return out
end
local more_at = #out + 1
table.insert(out, '0')
local more = read_piece(dev, max_items, max_bytes, out)
set_draining(dev, more)
if more then out[more_at] = '1' end
return out
