-- Connect. ARGV: device, socket ("<node>:<socket>"), now_ms, has_groups ("1"/"0"), groups...
-- Returns: { imported ("1"/"0"), n_old_groups, old_groups..., event1, member1, event2, ... }
-- where old_groups are the groups recorded before (only when has_groups).
local dev, sock, now, has_groups = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
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
  if #ARGV > 4 then redis.call('SADD', groups_key, unpack(ARGV, 5)) end
else
  table.insert(out, '0')
end
redis.call('PERSIST', groups_key)
local index = index_key(dev)
redis.call('PERSIST', index)
for _, event in ipairs(redis.call('SMEMBERS', index)) do
  local queue = queue_key(dev, event)
  redis.call('PERSIST', queue)
  for _, member in ipairs(redis.call('ZRANGE', queue, 0, -1)) do
    table.insert(out, event)
    table.insert(out, member)
  end
end
return out
