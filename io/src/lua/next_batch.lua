-- NextBatch. ARGV: device, socket ("<node>:<socket>"), now_ms, max_items, max_bytes, then
-- (event, id, padded id) triples of the acknowledged piece.
-- Returns { more ("1"/"0"), event1, member1, ... }: the next piece when the device is connected
-- through `socket` and draining (cleared when nothing remains after it), else nothing.
local dev, sock, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local max_items, max_bytes = tonumber(ARGV[4]), tonumber(ARGV[5])
local state, f = live_state(dev, now)
if state == 'absent' then return { '0' } end
for i = 6, #ARGV - 2, 3 do
  remove_id(dev, ARGV[i], ARGV[i + 1], ARGV[i + 2])
end
if state ~= 'connected' or f[4] ~= sock or f[5] ~= '1' then return { '0' } end
local out = { '0' }
local more = read_piece(dev, max_items, max_bytes, out)
set_draining(dev, more)
if more then out[1] = '1' end
return out
