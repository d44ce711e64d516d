"""The Lua scripts of :class:`edgeward.state.redis_policy.RedisPolicyStore`.

A script runs on the server as one command: no other client's command runs between its reads
and its writes, which is what makes ``add`` (set-if-absent) and ``incr`` (a fixed window)
atomic across gateways. MULTI/EXEC would queue the writes but cannot make them depend on what
is read, and WATCH plus retry would loop under contention on the hottest keys (a busy client's
rate counter is written by every gateway it reaches).

Layout under the store's prefix ``P``:

- ``P k:<key>``: a hash, field ``v`` the value, field ``x`` the expiry in wall-clock seconds of
  the gateways' clock (absent for never). Reads compare ``x`` with the caller's clock, so an
  expired key is absent at once; the key also carries a server-side PEXPIRE of the same
  remaining time, so the server reclaims it without a purge.
- ``P l:<name>``: a sorted set of the list's members scored by expiry (``inf`` for never), for
  purging members in expiry order; ``P m:<name>``: a hash of member -> JSON
  ``{"c": comment, "a": added_at, "x": expires_at}``, what reads return. Both change together
  in one script, so a reader never sees a member in one and not the other. ``P v:<name>``:
  the list's version token, set to a new random one by every add and remove (no expiry:
  purging expired members changes no live view, and the container keys' own expiry neither).

Times travel as the client's ``repr()`` of a float and are written back as the same strings,
so a stored expiry reads back exactly; Lua only compares them (``tonumber``).

Every script starts with a ``#!lua`` line (Redis 7 or later): a script so declared is refused
as a whole on a server out of memory or on a read-only replica, before it writes anything. A
script without it would be let through once its first command (a DEL) had written, and could
leave half its writes. The purge scripts only delete, so they may run out of memory (freeing
some is the point).

Caller mistakes are returned as an error reply starting with :data:`NOT_INTEGER`, which the
store turns into ``ValueError``; every other error reply is a fault of the store.
"""

from __future__ import annotations

NOT_INTEGER = "EDGEWARD-NOT-INTEGER"

_WRITES = "#!lua\n"
_DELETES = "#!lua flags=allow-oom\n"

# Shared head of the key scripts: is the hash at KEYS[1] live at ARGV[1] (now)?
_LIVE = """
local function live(key, now)
  local x = redis.call('HGET', key, 'x')
  if x then return tonumber(x) > now end
  return redis.call('EXISTS', key) == 1
end
"""

# KEYS[1]; ARGV: now, value, expires ('' for never), remaining ms.
_STORE = """
redis.call('DEL', KEYS[1])
if ARGV[3] == '' then
  redis.call('HSET', KEYS[1], 'v', ARGV[2])
else
  redis.call('HSET', KEYS[1], 'v', ARGV[2], 'x', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return 1
"""

SET = _WRITES + _STORE

# As SET, only when the key is absent or expired; 1 if stored.
ADD = (
    _WRITES
    + _LIVE
    + """
if live(KEYS[1], tonumber(ARGV[1])) then return 0 end
"""
    + _STORE
)

# KEYS[1]; ARGV: now. 1 if a live key was removed (an expired one is removed too).
DELETE = (
    _WRITES
    + _LIVE
    + """
local was = live(KEYS[1], tonumber(ARGV[1]))
redis.call('DEL', KEYS[1])
if was then return 1 end
return 0
"""
)

# KEYS[1]; ARGV: now, amount, expires of a new window, its ms. The new count, as a string.
INCR = (
    _WRITES
    + _LIVE
    + """
if not live(KEYS[1], tonumber(ARGV[1])) then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'v', ARGV[2], 'x', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return ARGV[2]
end
local n = redis.pcall('HINCRBY', KEYS[1], 'v', ARGV[2])
if type(n) == 'table' and n.err then
  return redis.error_reply('"""
    + NOT_INTEGER
    + """ ' .. n.err)
end
return tostring(n)
"""
)

# KEYS: the hashes to look at; ARGV: now. How many expired ones were removed.
PURGE_KEYS = (
    _DELETES
    + """
local now = tonumber(ARGV[1])
local n = 0
for _, key in ipairs(KEYS) do
  -- pcall: one foreign key under the prefix (not a hash) must not stop every purge.
  local x = redis.pcall('HGET', key, 'x')
  if type(x) == 'string' and tonumber(x) and tonumber(x) <= now then
    redis.call('DEL', key)
    n = n + 1
  end
end
return n
"""
)

# The list's container keys expire with its last member; a member without expiry keeps them.
_RECLAIM = """
local function reclaim(zset, meta, now)
  local top = redis.call('ZRANGE', zset, -1, -1, 'WITHSCORES')
  if top[2] == nil then return end
  if top[2] == 'inf' then
    redis.call('PERSIST', zset)
    redis.call('PERSIST', meta)
  else
    local ms = math.max(1, math.ceil((tonumber(top[2]) - now) * 1000))
    redis.call('PEXPIRE', zset, ms)
    redis.call('PEXPIRE', meta, ms)
  end
end
"""

# KEYS: zset, meta, version; ARGV: now, member, score ('inf' or the expiry), meta JSON, new token.
LIST_ADD = (
    _WRITES
    + _RECLAIM
    + """
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
redis.call('SET', KEYS[3], ARGV[5])
reclaim(KEYS[1], KEYS[2], tonumber(ARGV[1]))
return 1
"""
)


_MEMBER_LIVE = """
local function member_live(zset, member, now)
  local s = redis.call('ZSCORE', zset, member)
  if not s then return false end
  return s == 'inf' or tonumber(s) > now
end
"""


# KEYS: zset, meta, version; ARGV: now, member, new version token. 1 if a live member was removed.
LIST_REMOVE = (
    _WRITES
    + _MEMBER_LIVE
    + _RECLAIM
    + """
local was = member_live(KEYS[1], ARGV[2], tonumber(ARGV[1]))
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[3])
reclaim(KEYS[1], KEYS[2], tonumber(ARGV[1]))
if was then return 1 end
return 0
"""
)

# KEYS: zset, meta; ARGV: now. How many expired members were removed.
LIST_PURGE = (
    _DELETES
    + """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, member in ipairs(gone) do
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], member)
end
return #gone
"""
)
