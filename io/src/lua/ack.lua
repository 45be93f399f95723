-- Ack. ARGV: device, event, id (decimal), padded id, resync ("1"/"0"), now_ms.
-- Returns "removed", "kept" or "resync".
local dev, event, id, padded, resync, now =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
live_state(dev, now)
if resync ~= '1' then
  if remove_id(dev, event, id, padded) then return 'removed' end
  return 'kept'
end
local queue = queue_key(dev, event)
local head = redis.call('ZRANGE', queue, 0, 0)[1]
if head and string.sub(head, 1, #padded + 1) == padded .. ':' then
  redis.call('ZREM', queue, head)
  if redis.call('EXISTS', queue) == 0 then redis.call('SREM', index_key(dev), event) end
  return 'removed'
end
redis.call('DEL', queue)
redis.call('SREM', index_key(dev), event)
return 'resync'
