-- Disconnect. ARGV: device, socket, now_ms, ttl_ms. Returns 1 when the device was marked.
local dev, sock, now, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local state, f = live_state(dev, now)
-- Only the latest socket of a connected device disconnects it (the model's rule): a repeated
-- disconnect never moves the recorded time or ttl.
if state ~= 'connected' or f[4] ~= sock then return 0 end
mark_disconnected(dev, now, ttl)
refresh_user_expiry()
return 1
