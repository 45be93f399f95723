-- Legacy import of one device (after Connect). ARGV: device, then (event, member) pairs.
-- Marks the device imported. Returns the number of items added.
local dev = ARGV[1]
local added = 0
local index = index_key(dev)
for i = 2, #ARGV - 1, 2 do
  local event, member = ARGV[i], ARGV[i + 1]
  local id = string.sub(member, 1, 20)
  added = added + redis.call('ZADD', queue_key(dev, event), id, member)
  redis.call('SADD', index, event)
end
redis.call('HSET', device_key(dev), 'imp', '1')
return added
