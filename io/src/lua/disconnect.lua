-- Disconnect. ARGV: device, socket, now_ms, ttl_ms. Returns 1 when the device was marked.
local dev, sock, now, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local state, f = live_state(dev, now)
-- Only the latest socket of a connected device disconnects it (the model's rule): a repeated
-- disconnect never moves the recorded time or ttl.
if state ~= 'connected' or f[4] ~= sock then return 0 end
local dkey = device_key(dev)
redis.call('HSET', dkey, 'conn', '0', 'at', ARGV[3], 'ttl', ARGV[4])
if ttl > 0 then
  local reclaim = reclaim_at(now + ttl, ttl)
  local index = index_key(dev)
  redis.call('PEXPIREAT', dkey, reclaim)
  for _, event in ipairs(redis.call('SMEMBERS', index)) do
    redis.call('PEXPIREAT', queue_key(dev, event), reclaim)
  end
  redis.call('PEXPIREAT', index, reclaim)
end
refresh_user_expiry()
return 1
