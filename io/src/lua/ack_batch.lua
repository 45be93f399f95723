-- AckBatch. ARGV: device, now_ms, then (event, id, padded id) triples. Returns the number removed.
local dev, now = ARGV[1], tonumber(ARGV[2])
live_state(dev, now)
local removed = 0
for i = 3, #ARGV - 2, 3 do
  if remove_id(dev, ARGV[i], ARGV[i + 1], ARGV[i + 2]) then removed = removed + 1 end
end
return removed
