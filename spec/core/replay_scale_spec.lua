-- Hardening (issue "Hardening", item 1): the replay state at scale and the
-- AEAD time window at its edges, at the codec level through the FFI.
--
--   * N fresh AuthIDs (2,000,000; LURAY_REPLAY_N overrides) inserted with
--     lr_replay_check_authid at one `now`: every one LR_OK (0 false
--     replays), then every one re-checked: 100% LR_EREPLAY; the stats hold
--     exactly N entries.  The time taken is printed.
--   * a small cap: inserts beyond it fail closed (LR_EFULL) and are counted
--     in lr_replay_stats; a held AuthID is still a replay at the cap.
--   * skew: lr_req_decode accepts AEAD headers with ts = now +-119 (and
--     +-120) and refuses now +-121 (and +-200) with LR_ETIME.
--
-- AuthIDs here are distinct by construction (a 64-bit counter in the first
-- 8 bytes, 8 random bytes after), so any non-OK on the first pass is a
-- false replay of the filter, not a random collision.
local H = require "helper"
local C, ffi = H.C, H.ffi
local S = H.S

local N = tonumber(os.getenv("LURAY_REPLAY_N") or "") or 2000000
local T = 1795564195

local function new_replay(cap) return ffi.gc(C.lr_replay_new(cap or 0), C.lr_replay_free) end

local function stats(r)
  local s = ffi.new("struct lr_replay_stats")
  C.lr_replay_stats(r, s)
  return { authids = tonumber(s.authids), sessions = tonumber(s.sessions),
           refused = tonumber(s.full_refusals) }
end

local function name(rc) return ("%s (%d)"):format(H.strerror(rc), rc) end

describe("replay state at scale", function()
  it(("%d fresh AuthIDs in one window: 0 false replays, then 100%% LR_EREPLAY"):format(N), function()
    local r = new_replay(N)
    assert.is_not_nil(r, "lr_replay_new(N) returned NULL")
    local id = ffi.new("uint8_t[16]")
    local w = ffi.cast("uint64_t *", id)
    w[1] = 0
    local salt = ffi.new("uint8_t[8]")
    C.lr_random(salt, 8)
    local salt64 = ffi.cast("uint64_t *", salt)[0]
    local function make(i)
      -- distinct: the counter in word 0; word 1 a fixed random salt mixed
      -- with the counter so the bytes do not look sequential
      w[0] = ffi.cast("uint64_t", i) * 0x9E3779B97F4A7C15ULL + 0x0123456789ABCDEFULL
      w[1] = salt64 ~= 0 and (salt64 * (i + 1)) or (i + 7)
    end

    local false_replays, other, first_bad = 0, 0, nil
    local t0 = os.clock()
    for i = 0, N - 1 do
      make(i)
      local rc = C.lr_replay_check_authid(r, id, T)
      if rc ~= 0 then
        if rc == S.LR_EREPLAY then false_replays = false_replays + 1 else other = other + 1 end
        first_bad = first_bad or ("#%d: %s"):format(i, name(rc))
      end
    end
    local t_insert = os.clock() - t0
    local st = stats(r)

    local replays, missed, first_miss = 0, 0, nil
    t0 = os.clock()
    for i = 0, N - 1 do
      make(i)
      local rc = C.lr_replay_check_authid(r, id, T + 1)
      if rc == S.LR_EREPLAY then replays = replays + 1
      else missed = missed + 1; first_miss = first_miss or ("#%d: %s"):format(i, name(rc)) end
    end
    local t_recheck = os.clock() - t0
    local st2 = stats(r)

    print(("# replay_scale: %d AuthIDs inserted in %.2f s (%.0f ns each), %d held; "
           .. "%d false replays, %d other errors"):format(N, t_insert, t_insert / N * 1e9,
           st.authids, false_replays, other))
    print(("# replay_scale: re-check of %d in %.2f s: %d LR_EREPLAY (%.4f%%), %d not refused; "
           .. "held %d, full refusals %d"):format(N, t_recheck, replays, replays / N * 100, missed,
           st2.authids, st2.refused))

    assert.equal(0, false_replays, "false replays on fresh AuthIDs, first " .. tostring(first_bad))
    assert.equal(0, other, "errors on fresh AuthIDs, first " .. tostring(first_bad))
    assert.equal(N, st.authids)
    assert.equal(0, st.refused)
    assert.equal(N, replays, "re-checked AuthIDs not refused as replays, first " .. tostring(first_miss))
    assert.equal(N, st2.authids, "a re-check changed the number held")
    assert.equal(0, st2.refused)

    -- still held at the far end of the window (ts = T+120 seen at T+240)
    make(N - 1)
    assert.equal(S.LR_EREPLAY, C.lr_replay_check_authid(r, id, T + 240))
    -- they all age out: held until T+241, in 120 s expiry buckets, so gone
    -- by T+241+120 at the latest (replay.c)
    C.lr_replay_expire(r, T + 241 + 120 + 1)
    assert.equal(0, stats(r).authids, "AuthIDs still held after their window and bucket")
  end)

  it("at a small cap, inserts beyond it fail closed with LR_EFULL and are counted", function()
    local CAP, EXTRA = 1000, 250
    local r = new_replay(CAP)
    local id = ffi.new("uint8_t[16]")
    local w = ffi.cast("uint32_t *", id)
    local ok, full, other = 0, 0, 0
    for i = 1, CAP + EXTRA do
      w[0], w[1], w[2], w[3] = i, 0x5a5a5a5a, i * 7, 0xa5a5a5a5
      local rc = C.lr_replay_check_authid(r, id, T)
      if rc == 0 then ok = ok + 1 elseif rc == S.LR_EFULL then full = full + 1 else other = other + 1 end
    end
    local st = stats(r)
    print(("# replay_scale: cap %d, %d inserts: %d LR_OK, %d LR_EFULL, %d other; "
           .. "stats: %d held, %d full refusals"):format(CAP, CAP + EXTRA, ok, full, other,
           st.authids, st.refused))
    assert.equal(CAP, ok)
    assert.equal(EXTRA, full)
    assert.equal(0, other)
    assert.equal(CAP, st.authids)
    assert.equal(EXTRA, st.refused)
    -- a refused-at-cap AuthID was not recorded, and is refused again (closed)
    w[0], w[1], w[2], w[3] = CAP + 1, 0x5a5a5a5a, (CAP + 1) * 7, 0xa5a5a5a5
    assert.equal(S.LR_EFULL, C.lr_replay_check_authid(r, id, T))
    assert.equal(EXTRA + 1, stats(r).refused)
    -- a held one is still a replay at the cap (not merely "full")
    w[0], w[1], w[2], w[3] = 1, 0x5a5a5a5a, 7, 0xa5a5a5a5
    assert.equal(S.LR_EREPLAY, C.lr_replay_check_authid(r, id, T))
    -- once they expire there is room again
    C.lr_replay_expire(r, T + 1000)
    w[0] = CAP + 1
    assert.equal(0, C.lr_replay_check_authid(r, id, T + 1000))
  end)
end)

describe("AEAD time window at its edges (lr_req_decode)", function()
  local consumed = ffi.new("size_t[1]")
  local outlen = ffi.new("size_t[1]")

  local function encode(id, ts)
    local r = ffi.new("struct lr_req")
    r.mode = C.LR_MODE_AEAD
    r.version = 1
    r.v = 7
    r.option = 0x0d
    r.security = 3
    r.padding_len = 0
    ffi.copy(r.body_key, H.random(16), 16)
    ffi.copy(r.body_iv, H.random(16), 16)
    ffi.copy(r.auth_rand, H.random(4), 4)
    ffi.copy(r.conn_nonce, H.random(8), 8)
    r.command = 1
    r.port = 443
    r.atyp = 1
    r.addr_len = 4
    ffi.copy(r.addr, "\1\2\3\4", 4)
    r.ts = ts
    r.id_index = -1
    local out = ffi.new("uint8_t[?]", C.LR_REQ_WIRE_MAX)
    local rc = C.lr_req_encode(r, H.buf(id), out, C.LR_REQ_WIRE_MAX, outlen)
    assert.equal(0, rc, H.strerror(rc))
    return ffi.string(out, outlen[0])
  end

  local function decode(users, replay, wire, now)
    local dec = ffi.new("struct lr_req_dec")
    C.lr_req_dec_init(dec)
    local r = ffi.new("struct lr_req")
    return C.lr_req_decode(dec, users, replay, H.buf(wire), #wire, now, r, consumed)
  end

  it("ts = now+-119 and now+-120 accepted; now+-121 and now+-200 refused with LR_ETIME", function()
    local id = H.random(16)
    local users = ffi.gc(C.lr_users_new(), C.lr_users_free)
    assert.equal(0, C.lr_users_add(users, H.buf(id), 0))
    C.lr_users_set_legacy(users, 0)
    assert.equal(0, C.lr_users_refresh(users, T))
    local replay = new_replay()
    local want = {
      [-200] = S.LR_ETIME, [-121] = S.LR_ETIME, [-120] = 0, [-119] = 0, [0] = 0,
      [119] = 0, [120] = 0, [121] = S.LR_ETIME, [200] = S.LR_ETIME,
    }
    local offs = { -200, -121, -120, -119, 0, 119, 120, 121, 200 }
    local got, bad = {}, {}
    for _, now in ipairs { T, T + 3600 } do
      for _, d in ipairs(offs) do
        local rc = decode(users, replay, encode(id, now + d), now)
        got[#got + 1] = ("%+d:%s"):format(d, rc == 0 and "OK" or H.strerror(rc))
        if rc ~= want[d] then
          bad[#bad + 1] = ("now %d, ts now%+d: expected %s, got %s"):format(now, d,
            want[d] == 0 and "LR_OK" or name(want[d]), rc == 0 and "LR_OK" or name(rc))
        end
      end
    end
    print("# replay_scale: skew verdicts " .. table.concat(got, " ", 1, #offs))
    assert.is_true(#bad == 0, table.concat(bad, "\n"))
  end)
end)
