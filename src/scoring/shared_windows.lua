-- parcel-risk: the cross-declaration windows of one batch, shared by
-- replicas. The same rules as src/features/window.rs (WindowShard and
-- DistinctWindow), read and updated in one atomic call per batch.
--
-- Each window of a key is one string value: a buyer's parcels, oldest
-- first ("at value exporter declaration seen;..."), or a key's distinct
-- values in the in-process order ("value at;..."); each entry keeps its
-- text, so only new entries are formatted. The batch reads every
-- key it needs with one MGET, works on them in memory, and writes each key
-- it changed once (SET with its expiry): a few commands per declaration,
-- not one per step.
--
-- ARGV: prefix, split window (us), party window (us), most parcels per
-- buyer, most distinct values per key, split TTL (ms), party TTL (ms), the
-- day the batch counts in (its start in Unix seconds; "" not to count) and
-- the batch's size, then per declaration 8 values: buyer, address, importer
-- name, IOSS ("" for none), exporter, declaration ("0" for none), lodged at
-- (us), declared value (EUR cents). Keys are 64-bit numbers in decimal;
-- times and values stay strings when stored (Lua numbers are doubles: a
-- value near 2^63 would lose digits), and are compared as numbers
-- (microseconds since 1970 fit a double exactly).
--
-- Returns first the fleet's count of the day so far (this batch included;
-- 0 when not counted), then per declaration: buyer parcels, of them from
-- the same seller, distinct names at the address, distinct sellers of the
-- IOSS number (0 without one), all four as integers, then the declared
-- values of the counted parcels as stored, in text (summed by the caller,
-- saturating, as the local window does).

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
local count = (#ARGV - header) / 8

-- Every key of the batch, read at once. A declaration's keys are made once
-- here and reused below: building strings is much of the script's work.
local names, index, ttl = {}, {}, {}
local function need(key, key_ttl)
  if index[key] == nil then
    names[#names + 1] = key
    index[key] = #names
    ttl[key] = key_ttl
  end
end
local buyer_prefix = prefix .. ':buyer:'
local address_prefix = prefix .. ':address:'
local ioss_prefix = prefix .. ':ioss:'
local buyer_keys, address_keys, ioss_keys = {}, {}, {}
for i = 0, count - 1 do
  local base = header + i * 8
  local buyer_key = buyer_prefix .. ARGV[base + 1]
  local address_key = address_prefix .. ARGV[base + 2]
  buyer_keys[i] = buyer_key
  address_keys[i] = address_key
  need(buyer_key, split_ttl)
  need(address_key, party_ttl)
  local ioss = ARGV[base + 4]
  if ioss ~= '' then
    local ioss_key = ioss_prefix .. ioss
    ioss_keys[i] = ioss_key
    need(ioss_key, party_ttl)
  end
end
local stored = {}
if #names > 0 then
  stored = redis.call('MGET', unpack(names))
end

-- Parsed windows, by key, parsed on first use; `changed` keys are written back.
local windows, changed = {}, {}

local function buyer_window(key)
  local w = windows[key]
  if w == nil then
    w = {}
    local raw = stored[index[key]]
    if raw then
      for text, e_at, e_value, e_exporter, e_declaration, e_seen in
        string.gmatch(raw, '(([^ ;]+) ([^ ;]+) ([^ ;]+) ([^ ;]+) ([^ ;]+))') do
        w[#w + 1] = { text = text, at = tonumber(e_at), value = e_value,
          exporter = e_exporter, declaration = e_declaration, seen = tonumber(e_seen) }
      end
    end
    windows[key] = w
  end
  return w
end

local function distinct_window(key)
  local w = windows[key]
  if w == nil then
    w = {}
    local raw = stored[index[key]]
    if raw then
      for text, v, t in string.gmatch(raw, '(([^ ;]+) ([^ ;]+))') do
        w[#w + 1] = { text = text, value = v, at = tonumber(t) }
      end
    end
    windows[key] = w
  end
  return w
end

-- Distinct values of a key over the party window; answers how many, this
-- one included (DistinctWindow::observe).
local function distinct(key, value, at_text, at)
  local seen = distinct_window(key)
  local kept, found, oldest = {}, nil, nil
  for j = 1, #seen do
    local e = seen[j]
    if not (at - e.at > party_window) then
      kept[#kept + 1] = e
      if e.value == value then
        found = #kept
      end
      if oldest == nil or e.at < kept[oldest].at then
        oldest = #kept
      end
    end
  end
  local entry = { text = value .. ' ' .. at_text, value = value, at = at }
  if found ~= nil then
    if at > kept[found].at then
      kept[found] = entry
    end
  elseif #kept < max_distinct then
    kept[#kept + 1] = entry
  elseif oldest ~= nil then
    -- Full: the value seen longest ago makes room.
    kept[oldest] = entry
  end
  windows[key] = kept
  changed[key] = true
  return #kept
end

-- The order parcels were first seen in, across replicas: one number per
-- declaration of the batch, reserved at once.
local first_seen = redis.call('INCRBY', prefix .. ':observed', count) - count

-- Traffic per day across replicas: each takes its share of the day's capacity.
local fleet = 0
if day ~= '' then
  local key = prefix .. ':fleet:' .. day
  fleet = redis.call('INCRBY', key, batch_size)
  redis.call('EXPIRE', key, 3 * 86400)
end

-- Counts go back as numbers (integer replies): formatting them is work.
local out = { { fleet } }
for i = 0, count - 1 do
  local base = header + i * 8
  local name, exporter = ARGV[base + 3], ARGV[base + 5]
  local declaration, at_text, value = ARGV[base + 6], ARGV[base + 7], ARGV[base + 8]
  local at = tonumber(at_text)

  -- The buyer's parcels, oldest first (WindowShard::observe).
  local key = buyer_keys[i]
  local entries = buyer_window(key)
  local first = 1
  while first <= #entries and at - entries[first].at > split_window do
    first = first + 1
  end
  if first > 1 then
    local kept = {}
    for j = first, #entries do
      kept[#kept + 1] = entries[j]
    end
    entries = kept
  end
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
  local names_at_address = distinct(address_keys[i], name, at_text, at)
  local buyer_parcels, same_seller = 0, 0
  local row = { 0, 0, names_at_address, 0 }
  for j = 1, #entries do
    local e = entries[j]
    if math.abs(at - e.at) <= split_window and e.seen < seen_before
      and (declaration == '0' or e.declaration ~= declaration) then
      buyer_parcels = buyer_parcels + 1
      if e.exporter == exporter then
        same_seller = same_seller + 1
      end
      row[#row + 1] = e.value
    end
  end
  row[1], row[2] = buyer_parcels, same_seller
  local seen = resent and entries[resent].seen or (first_seen + i + 1)
  local entry = { at = at, value = value, exporter = exporter, declaration = declaration,
    seen = seen, text = at_text .. ' ' .. value .. ' ' .. exporter .. ' ' .. declaration .. ' '
      .. string.format('%d', seen) }
  if resent then
    entries[resent] = entry
  else
    if #entries == max_per_buyer then
      table.remove(entries, 1)
    end
    entries[#entries + 1] = entry
  end
  windows[key] = entries
  changed[key] = true

  local ioss_key = ioss_keys[i]
  if ioss_key then
    row[4] = distinct(ioss_key, exporter, at_text, at)
  end
  out[#out + 1] = row
end

-- Each changed window written once, with its expiry.
for key, _ in pairs(changed) do
  local w = windows[key]
  if #w == 0 then
    redis.call('DEL', key)
  else
    local parts = {}
    for j = 1, #w do
      parts[j] = w[j].text
    end
    redis.call('SET', key, table.concat(parts, ';'), 'PX', ttl[key])
  end
end
return out
