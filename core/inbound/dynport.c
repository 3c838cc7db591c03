/*
 * Dynamic port, inbound side (dynport.h).
 */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "inbound/dynport.h"

/* The clock of the dynamic-port epochs. */
static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ----------------------------------------------------------- dynamic port
 *
 * A VMess inbound with dynamic_port has a second listener, its detour, on
 * a port of the range.  Each response of the main inbound to user U
 * carries the SwitchAccount command (vmess-wire.md 10) naming the detour
 * port and U's own detour ID; on the detour that ID is U: its table entry
 * maps to U's user index, so policies, user rules, the access log and
 * hooks all see U.  (v2ray 4.34 likewise gives each email a random UUID in
 * its detour inbound, remade with it every `refresh` minutes.)
 *
 * IDs.  Time counts in epochs of L = minutes * 60 s on the monotonic clock
 * from the daemon's start (dyn_t0): epoch e is [t0 + eL, t0 + (e+1)L).
 * U's ID for epoch e is the first 16 bytes, as a version-4 UUID, of
 *   HMAC-SHA256(secret, "luaray dynamic-port id" 0 || detour tag || 0 ||
 *               BE32(minutes) || BE64(e) || U's id)
 * where the secret is 32 random bytes per process.  A keyed derivation
 * rather than random IDs in a table: nothing to store or carry across
 * reloads, any ID computed when needed, yet without the secret an ID can
 * neither be predicted nor linked to U's own ID or to U's other epochs.
 * A restart draws a new secret (v2ray forgets its IDs too).
 *
 * Validity.  A response in epoch e announces U's ID for e with valid_min
 * = minutes; the client uses it for that long from receipt, so until about
 * t0 + (e+2)L at most.  The detour accepts it from t0 + (e-1)L + G (before
 * its announcement, when nobody can know it) until t0 + (e+2)L + G, where
 * the grace G = 30 s covers the command's way to the client (it leaves
 * with the first response bytes).  So an ID is refused at most 2L + G
 * after it was first announced and L + G after it was last.  The table
 * holds three IDs per user, for epochs r-1, r and r+1 where r, the roll,
 * is the epoch of (now - G); U's ID for epoch e sits in U's slot e mod 3.
 * Once per epoch, at t0 + rL + G, one slot per user changes in place
 * (lr_users_set_id): a header half read under the outgoing ID then fails,
 * as any header under an expired ID does.
 *
 * Cost.  With allow_legacy every ID has an auth value per second of the
 * +-120 s window, refreshed every 10 s.  The incoming IDs' values are not
 * computed at the roll but from DYN_FILL_LEAD before their epoch begins,
 * 4 ms per 10 ms of loop (dyn_fill); lr_dyn_command completes them at once
 * if that is late, so an announced ID is always whole.  The detour then
 * refreshes 2 + (G + lead) / L IDs per user on average: 2.2 for the
 * default 5 minutes.
 *
 * Removal.  Each generation builds its detour's table from the users of
 * its main inbound, so a user removed (or given another id) by a reload
 * has no detour ID in the new generation: new connections are refused at
 * once; connections already open finish on their generation, as on the
 * main port.  A reload that changes `minutes` or the inbound's tag, and a
 * restart, change every ID.
 */

#define DYN_GRACE 30.0
#define DYN_SLOTS LR_DYN_SLOTS
#define DYN_FILL_LEAD 20.0

/* The epoch (rounded down) that monotonic time t falls in. */
static int64_t dyn_epoch(const struct lr_worker *rt, uint32_t minutes, double t)
{
    int64_t ms = (int64_t)((t - rt->dyn_t0) * 1000.0);
    int64_t len = (int64_t)minutes * 60000;
    return ms >= 0 ? ms / len : -((-ms + len - 1) / len);
}

/* The epoch of {r-1, r, r+1} that slot s (0..2) holds. */
static int64_t slot_epoch(int64_t r, uint32_t s)
{
    int64_t base = r - 1;
    int64_t m = ((base % DYN_SLOTS) + DYN_SLOTS) % DYN_SLOTS;
    return base + (((int64_t)s - m + DYN_SLOTS) % DYN_SLOTS);
}

/* User `uid`'s detour ID for epoch e (see above). */
static int dyn_id(const struct lr_worker *rt, const char *tag, uint32_t minutes,
                  const uint8_t *uid, int64_t e, uint8_t *out)
{
    static const char label[] = "luaray dynamic-port id";
    uint8_t msg[sizeof(label) + 256 + 1 + 4 + 8 + 16], mac[32];
    size_t n = sizeof(label), tl = strlen(tag);
    if (tl > 256)
        tl = 256;
    memcpy(msg, label, sizeof(label)); /* with its NUL */
    memcpy(msg + n, tag, tl);
    n += tl;
    msg[n++] = 0;
    lr_put_be32(msg + n, minutes);
    n += 4;
    lr_put_be64(msg + n, (uint64_t)e);
    n += 8;
    memcpy(msg + n, uid, 16);
    n += 16;
    int rc = lr_hmac_sha256(rt->dyn_secret, sizeof(rt->dyn_secret), msg, n, mac);
    memcpy(out, mac, 16);
    out[6] = (uint8_t)((out[6] & 0x0f) | 0x40);
    out[8] = (uint8_t)((out[8] & 0x3f) | 0x80);
    lr_wipe(mac, sizeof(mac));
    lr_wipe(msg, sizeof(msg));
    return rc;
}

/* A detour's table: DYN_SLOTS IDs for each user of its main inbound, in
 * slots 3j, 3j+1, 3j+2 for the j-th of them, all mapping to that user. */
int lr_dyn_table(struct lr_worker *rt, struct lr_inbound *ib,
                 const struct lr_user_info *users, const uint32_t *which, uint32_t n)
{
    int64_t r = dyn_epoch(rt, ib->dyn_minutes, mono_now() - DYN_GRACE);
    ib->dyn_roll = r;
    for (uint32_t j = 0; j < n; j++) {
        uint32_t k = which[j];
        for (uint32_t s = 0; s < DYN_SLOTS; s++) {
            uint8_t id[16];
            int rc = dyn_id(rt, ib->tag, ib->dyn_minutes, users[k].id,
                            slot_epoch(r, s), id);
            int idx = rc == LR_OK ? lr_users_add(ib->users, id, ib->dyn_alter) : rc;
            lr_wipe(id, sizeof(id));
            if (idx < 0)
                return -1;
            ib->user_map[idx] = (int32_t)k;
        }
    }
    return 0;
}

/* Fills waiting legacy values of detour `ib` for at most `budget`
 * seconds (resuming where the last call stopped). */
static void dyn_fill(struct lr_inbound *ib, double budget)
{
    uint32_t n = lr_users_count(ib->users);
    double until = mono_now() + budget;
    for (uint32_t k = 0; k < n && ib->dyn_stale; k++) {
        uint32_t i = ib->dyn_fill_at++ % n;
        if (lr_users_legacy_fill(ib->users, i)) {
            ib->dyn_stale--;
            if (mono_now() >= until)
                break;
        }
    }
    ib->dyn_fill_at %= n ? n : 1;
}

void lr_dyn_fill_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lr_worker *rt = w->data;
    int left = 0;
    for (uint32_t i = 0; rt->gen && i < rt->gen->nib; i++) {
        struct lr_inbound *ib = &rt->gen->ib[i];
        if (ib->is_detour && ib->dyn_stale) {
            dyn_fill(ib, 0.004);
            left |= ib->dyn_stale != 0;
        }
    }
    if (!left)
        ev_timer_stop(loop, w);
}

void lr_dyn_roll(struct lr_inbound *ib)
{
    if (!ib->is_detour || !ib->users || !ib->gen)
        return;
    int current = ib->rt && ib->gen == ib->rt->gen;
    int64_t r = dyn_epoch(ib->rt, ib->dyn_minutes, mono_now() - DYN_GRACE);
    if (r != ib->dyn_roll) {
        int rc = LR_OK;
        int64_t from = INT64_MAX;
        uint32_t n = lr_users_count(ib->users);
        for (uint32_t i = 0; i < n; i++) {
            uint32_t s = i % DYN_SLOTS;
            int64_t e = slot_epoch(r, s);
            if (e == slot_epoch(ib->dyn_roll, s))
                continue;
            uint8_t id[16];
            int r2 = dyn_id(ib->rt, ib->tag, ib->dyn_minutes,
                            ib->gen->users[ib->user_map[i]].id, e, id);
            /* the new IDs' legacy values (the bulk of the work: about 240
             * HMAC-MD5s per ID) are filled a bit at a time, before they
             * are announced (lr_dyn_command makes sure) */
            if (r2 == LR_OK)
                r2 = lr_users_set_id(ib->users, i, id, 1);
            lr_wipe(id, sizeof(id));
            if (r2 != LR_OK)
                rc = r2;
            if (e < from)
                from = e;
        }
        if (!ib->dyn_stale || from < ib->dyn_stale_from)
            ib->dyn_stale_from = from;
        ib->dyn_stale = 0;
        for (uint32_t i = 0; i < n; i++)
            ib->dyn_stale += ib->users->v[i].legacy_stale;
        if (rc != LR_OK)
            /* tried again at the next call; a slot that failed refuses both
             * its old and its new ID meanwhile (lr_users_set_id) */
            lr_warn("inbound %s: rotating the dynamic-port IDs failed: %s",
                    ib->tag, lr_strerror(rc));
        else
            ib->dyn_roll = r;
    }
    if (ib->dyn_stale && current && ib->rt->net.loop) {
        /* from DYN_FILL_LEAD before the first waiting epoch is announced:
         * until then no client can use those IDs, and the legacy refresh
         * every 10 s skips them */
        if (!ev_is_active(&ib->rt->dyn_fill_w)) {
            double at = ib->rt->dyn_t0 + 60.0 * ib->dyn_minutes *
                        (double)ib->dyn_stale_from - DYN_FILL_LEAD;
            double after = at - mono_now();
            ev_timer_set(&ib->rt->dyn_fill_w, after > 0 ? after : 0., 0.01);
            ev_timer_start(ib->rt->net.loop, &ib->rt->dyn_fill_w);
        }
    }
    /* An older generation's detour only finishes handshakes begun before
     * the reload: it rotates (old IDs expire there too) but is not filled;
     * clients told a new ID connect to the current generation's. */
}

const struct lr_cmd_switch *lr_dyn_command(struct lr_inbound *ib,
                                           const struct lr_user_info *u,
                                           struct lr_cmd_switch *buf)
{
    struct lr_inbound *dt = ib->dyn_detour;
    if (!ib->dyn_cmd || !dt)
        return NULL;
    *buf = *ib->dyn_cmd;
    int64_t e = dyn_epoch(ib->rt, dt->dyn_minutes, mono_now());
    /* the ID announced must be whole on the detour, legacy values too */
    lr_dyn_roll(dt);
    if (dt->dyn_stale && e >= dt->dyn_stale_from && dt->gen == dt->rt->gen)
        dyn_fill(dt, 1e9);
    if (dyn_id(ib->rt, dt->tag, dt->dyn_minutes, u->id, e, buf->id) != LR_OK) {
        lr_wipe(buf, sizeof(*buf));
        return NULL;
    }
    buf->level = (uint8_t)(u->level > 255 ? 255 : u->level);
    return buf;
}

