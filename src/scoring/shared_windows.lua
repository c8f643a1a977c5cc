-- parcel-risk: the cross-declaration windows of one batch, shared by
-- replicas. The same rules as src/features/window.rs (WindowShard and
-- DistinctWindow), read and updated in one atomic call per batch.
--
-- Storage. Each window of a key is one MessagePack array (decoded and
-- encoded in C by Redis's cmsgpack, not parsed in Lua): a buyer's parcels,
-- oldest first, as {at, value, exporter, declaration, seen}, or a key's
-- distinct values in the in-process order as {value, at}. Windows are
-- fields of hashes, one per kind of window and time bucket of the kind's
-- TTL (Redis's clock): a batch reads the current and the previous bucket
-- of each kind with one HMGET each and writes every window it changed
-- into the current bucket with one HSET, a handful of commands per batch
-- where a key per window took one SET per declaration and window (each
-- with its own expiry, measured 2.5 us a key against under 1 us in one
-- call). A window is kept for one to two TTLs after its last write: the
-- bucket before the previous one is unlinked (freed in the background,
-- not by a blocking expiry), and each bucket also expires on its own a
-- TTL after it can no longer be read, should no batch come to unlink it.
--
-- KEYS: the order counter (prefix .. ':observed'), the one key declared: on
-- a Redis Cluster it routes the call, and every other key shares its slot
-- because the prefix is a hash tag ("{name}").
--
-- ARGV: prefix, split window (us), party window (us), most parcels per
-- buyer, most distinct values per key, split TTL (ms), party TTL (ms), the
-- day the batch counts in (its start in Unix seconds; "" not to count) and
-- the batch's size, then per declaration 8 values: buyer, address, importer
-- name, IOSS ("" for none), exporter, declaration ("0" for none), lodged at
-- (us), declared value (EUR cents). Keys are 64-bit numbers in decimal and
-- stay strings (Lua numbers are doubles: a value near 2^63 would lose
-- digits), as do declared values; times are compared as numbers
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
local split_ttl = tonumber(ARGV[6])
local party_ttl = tonumber(ARGV[7])
local day = ARGV[8]
local batch_size = ARGV[9]
local header = 9
local count = (#ARGV - header) / 8

local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- A kind of window: its buckets, the fields the batch needs, and the
-- windows read, by field.
local function kind(name, ttl)
  local bucket = math.floor(now_ms / ttl)
  local base = prefix .. ':windows:' .. name .. ':'
  return {
    ttl = ttl, bucket = bucket,
    current = base .. string.format('%d', bucket),
    previous = base .. string.format('%d', bucket - 1),
    stale = base .. string.format('%d', bucket - 2),
    fields = {}, wanted = {}, windows = {}, changed = {},
  }
end
local buyers = kind('buyer', split_ttl)
local addresses = kind('address', party_ttl)
local iosses = kind('ioss', party_ttl)

local function need(k, field)
  if not k.wanted[field] then
    k.wanted[field] = true
    k.fields[#k.fields + 1] = field
  end
end
for i = 0, count - 1 do
  local base = header + i * 8
  need(buyers, ARGV[base + 1])
  need(addresses, ARGV[base + 2])
  local ioss = ARGV[base + 4]
  if ioss ~= '' then
    need(iosses, ioss)
  end
end

-- Every window of the batch, read at once per kind and bucket; the newer
-- bucket's copy wins.
local function read(k)
  if #k.fields == 0 then
    return
  end
  local current = redis.call('HMGET', k.current, unpack(k.fields))
  local previous = redis.call('HMGET', k.previous, unpack(k.fields))
  for j = 1, #k.fields do
    local raw = current[j] or previous[j]
    if raw then
      k.windows[k.fields[j]] = cmsgpack.unpack(raw)
    else
      k.windows[k.fields[j]] = {}
    end
  end
end
read(buyers)
read(addresses)
read(iosses)

-- Distinct values of a key over the party window; answers how many, this
-- one included (DistinctWindow::observe).
local function distinct(k, field, value, at)
  local seen = k.windows[field]
  local kept, found, oldest = {}, nil, nil
  for j = 1, #seen do
    local e = seen[j]
    if not (at - e[2] > party_window) then
      kept[#kept + 1] = e
      if e[1] == value then
        found = #kept
      end
      if oldest == nil or e[2] < kept[oldest][2] then
        oldest = #kept
      end
    end
  end
  local entry = { value, at }
  if found ~= nil then
    if at > kept[found][2] then
      kept[found] = entry
    end
  elseif #kept < max_distinct then
    kept[#kept + 1] = entry
  elseif oldest ~= nil then
    -- Full: the value seen longest ago makes room.
    kept[oldest] = entry
  end
  k.windows[field] = kept
  k.changed[field] = true
  return #kept
end

-- The order parcels were first seen in, across replicas: one number per
-- declaration of the batch, reserved at once.
local first_seen = redis.call('INCRBY', KEYS[1], count) - count

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
  local buyer, address, name = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local ioss, exporter = ARGV[base + 4], ARGV[base + 5]
  local declaration, value = ARGV[base + 6], ARGV[base + 8]
  local at = tonumber(ARGV[base + 7])

  -- The buyer's parcels, oldest first (WindowShard::observe).
  local entries = buyers.windows[buyer]
  local first = 1
  while first <= #entries and at - entries[first][1] > split_window do
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
      if entries[j][4] == declaration then
        resent = j
        break
      end
    end
  end
  local seen_before = resent and entries[resent][5] or math.huge
  local names_at_address = distinct(addresses, address, name, at)
  local buyer_parcels, same_seller = 0, 0
  local row = { 0, 0, names_at_address, 0 }
  for j = 1, #entries do
    local e = entries[j]
    if math.abs(at - e[1]) <= split_window and e[5] < seen_before
      and (declaration == '0' or e[4] ~= declaration) then
      buyer_parcels = buyer_parcels + 1
      if e[3] == exporter then
        same_seller = same_seller + 1
      end
      row[#row + 1] = e[2]
    end
  end
  row[1], row[2] = buyer_parcels, same_seller
  local seen = resent and entries[resent][5] or (first_seen + i + 1)
  local entry = { at, value, exporter, declaration, seen }
  if resent then
    entries[resent] = entry
  else
    if #entries == max_per_buyer then
      table.remove(entries, 1)
    end
    entries[#entries + 1] = entry
  end
  buyers.windows[buyer] = entries
  buyers.changed[buyer] = true

  if ioss ~= '' then
    row[4] = distinct(iosses, ioss, exporter, at)
  end
  out[#out + 1] = row
end

-- Each kind's changed windows written in one call into its current bucket.
local function write(k)
  local pairs_out = {}
  for field, _ in pairs(k.changed) do
    pairs_out[#pairs_out + 1] = field
    pairs_out[#pairs_out + 1] = cmsgpack.pack(k.windows[field])
  end
  if #pairs_out == 0 then
    return
  end
  redis.call('HSET', k.current, unpack(pairs_out))
  -- Readable while current or previous; gone a TTL after that at the latest.
  redis.call('PEXPIREAT', k.current, (k.bucket + 3) * k.ttl)
  redis.call('UNLINK', k.stale)
end
write(buyers)
write(addresses)
write(iosses)
return out
