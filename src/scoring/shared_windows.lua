-- parcel-risk: the cross-declaration windows of one batch, shared by
-- replicas. The same rules as src/features/window.rs (WindowShard and
-- DistinctWindow), read and updated in one atomic call per batch.
--
-- ARGV: prefix, split window (us), party window (us), most parcels per
-- buyer, most distinct values per key, split TTL (ms), party TTL (ms), the
-- day the batch counts in (its start in Unix seconds; "" not to count) and
-- the batch's size, then per declaration 8 values: buyer, address, importer name, IOSS ("" for
-- none), exporter, declaration ("0" for none), lodged at (us), declared
-- value (EUR cents). Keys are 64-bit numbers in decimal; times and values
-- stay strings when stored (Lua numbers are doubles: a value near 2^63
-- would lose digits), and are compared as numbers (microseconds since 1970
-- fit a double exactly).
--
-- Returns first the fleet's count of the day so far (this batch included;
-- "0" when not counted), then per declaration: buyer parcels, of them from the same seller,
-- distinct names at the address, distinct sellers of the IOSS number ("0"
-- without one), then the declared values of the counted parcels (summed by
-- the caller, saturating, as the local window does).

local prefix = ARGV[1]
local split_window = tonumber(ARGV[2])
local party_window = tonumber(ARGV[3])
local max_per_buyer = tonumber(ARGV[4])
local max_distinct = tonumber(ARGV[5])
local split_ttl = ARGV[6]
local party_ttl = ARGV[7]
local day = ARGV[8]
local batch_size = ARGV[9]
local header = 9

-- Distinct values of a key over the party window (a hash: value -> last
-- seen); answers how many, this one included.
local function distinct(key, value, at_text)
  local at = tonumber(at_text)
  local all = redis.call('HGETALL', key)
  local count = 0
  local found = nil
  local oldest_value, oldest_at = nil, nil
  for j = 1, #all, 2 do
    local v, t = all[j], tonumber(all[j + 1])
    if at - t > party_window then
      redis.call('HDEL', key, v)
    else
      count = count + 1
      if v == value then
        found = t
      end
      if oldest_at == nil or t < oldest_at then
        oldest_value, oldest_at = v, t
      end
    end
  end
  if found ~= nil then
    if at > found then
      redis.call('HSET', key, value, at_text)
    end
  elseif count < max_distinct then
    redis.call('HSET', key, value, at_text)
    count = count + 1
  elseif oldest_value ~= nil then
    -- Full: the value seen longest ago makes room.
    redis.call('HDEL', key, oldest_value)
    redis.call('HSET', key, value, at_text)
  end
  redis.call('PEXPIRE', key, party_ttl)
  return count
end

-- Traffic per day across replicas: each takes its share of the day's capacity.
local fleet = 0
if day ~= '' then
  local key = prefix .. ':fleet:' .. day
  fleet = redis.call('INCRBY', key, batch_size)
  redis.call('EXPIRE', key, 3 * 86400)
end
local out = { { tostring(fleet) } }
local count = (#ARGV - header) / 8
for i = 0, count - 1 do
  local b = header + i * 8
  local buyer, address, name, ioss = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local exporter, declaration, at_text, value = ARGV[b + 5], ARGV[b + 6], ARGV[b + 7], ARGV[b + 8]
  local at = tonumber(at_text)

  -- The buyer's parcels, oldest first: "at value exporter declaration seen_as".
  local key = prefix .. ':buyer:' .. buyer
  local entries = {}
  for _, raw in ipairs(redis.call('LRANGE', key, 0, -1)) do
    local e_at, e_value, e_exporter, e_declaration, e_seen =
      string.match(raw, '^(%S+) (%S+) (%S+) (%S+) (%S+)$')
    if e_at then
      entries[#entries + 1] = {
        at_text = e_at, at = tonumber(e_at), value = e_value, exporter = e_exporter,
        declaration = e_declaration, seen = tonumber(e_seen), seen_text = e_seen,
      }
    end
  end
  -- Drop the parcels that left the window, from the oldest on.
  local first = 1
  while first <= #entries and at - entries[first].at > split_window do
    first = first + 1
  end
  local kept = {}
  for j = first, #entries do
    kept[#kept + 1] = entries[j]
  end
  entries = kept
  -- A resent declaration is read as the first time and updates its entry.
  local resent = nil
  if declaration ~= '0' then
    for j = 1, #entries do
      if entries[j].declaration == declaration then
        resent = j
        break
      end
    end
  end
  local seen_before = resent and entries[resent].seen or math.huge
  local names = distinct(prefix .. ':address:' .. address, name, at_text)
  local buyer_parcels, same_seller = 0, 0
  local values = {}
  for j = 1, #entries do
    local e = entries[j]
    if math.abs(at - e.at) <= split_window and e.seen < seen_before
      and (declaration == '0' or e.declaration ~= declaration) then
      buyer_parcels = buyer_parcels + 1
      if e.exporter == exporter then
        same_seller = same_seller + 1
      end
      values[#values + 1] = e.value
    end
  end
  local seen_text
  if resent then
    seen_text = entries[resent].seen_text
  else
    seen_text = tostring(redis.call('INCR', prefix .. ':observed'))
  end
  local entry = { at_text = at_text, value = value, exporter = exporter,
    declaration = declaration, seen_text = seen_text }
  if resent then
    entries[resent] = entry
  else
    if #entries == max_per_buyer then
      table.remove(entries, 1)
    end
    entries[#entries + 1] = entry
  end
  redis.call('DEL', key)
  for j = 1, #entries do
    local e = entries[j]
    redis.call('RPUSH', key, e.at_text .. ' ' .. e.value .. ' ' .. e.exporter .. ' '
      .. e.declaration .. ' ' .. e.seen_text)
  end
  redis.call('PEXPIRE', key, split_ttl)

  local sellers = 0
  if ioss ~= '' then
    sellers = distinct(prefix .. ':ioss:' .. ioss, exporter, at_text)
  end
  local row = { tostring(buyer_parcels), tostring(same_seller), tostring(names), tostring(sellers) }
  for j = 1, #values do
    row[#row + 1] = values[j]
  end
  out[#out + 1] = row
end
return out
