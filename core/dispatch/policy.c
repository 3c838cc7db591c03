/*
 * Per-user policies.  One entry per email (created on first use), never
 * freed while the process runs, so connections may keep a pointer.  The
 * token bucket is shared by all connections of the user: bytes are
 * charged after they moved, and a connection whose user's bucket is in
 * debt stops reading until it refills (the relay asks lr_policy_wait).
 * Worker threads share the entries: every public call holds one mutex
 * (uncontended it costs tens of nanoseconds, once per relayed chunk).
 */
#include <arpa/inet.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "base/base.h"
#include "dispatch/policy.h"

#define MAX_IPS_TRACKED 1024

struct ipc {
    uint8_t ip[16];
    uint8_t len;
    uint32_t n;
};

struct lr_pol {
    struct lr_pol *next;
    uint32_t hash;
    char *email;
    struct lr_policy p;
    double bytes;
    uint32_t conns;
    struct ipc *ips;
    uint32_t nips;
    double tokens, last;
    /* the fleet (luaray.cluster; see "fleet" below): the other nodes' */
    uint32_t r_conns;            /* open connections, valid while r_gen is current */
    struct ipc *r_ips;           /* source addresses (n unused), likewise */
    uint32_t r_nips;
    uint64_t r_gen;
    double r_bytes;              /* bytes (kept when the view goes stale) */
    double base;                 /* this node's bytes in Redis beyond `bytes` */
    uint8_t base_known, reset_pending;
    char rgen[24];               /* the fleet's reset generation, as known */
};

/* the fleet's view of other nodes is used while fleet_gen is current and
 * fresh (fleet_fresh: set by the sync, cleared when it goes stale) */
static uint64_t fleet_gen, fleet_next;
static int fleet_fresh;

static int remote_has_ip(const struct lr_pol *p, const uint8_t *ip, int iplen)
{
    for (uint32_t i = 0; i < p->r_nips; i++)
        if (p->r_ips[i].len == iplen && memcmp(p->r_ips[i].ip, ip, (size_t)iplen) == 0)
            return 1;
    return 0;
}

static int remote_live(const struct lr_pol *p)
{
    return fleet_fresh && p->r_gen == fleet_gen;
}

/* Distinct source addresses over the fleet (local ones + the others'). */
static uint32_t fleet_ips(const struct lr_pol *p)
{
    uint32_t n = p->nips;
    if (!remote_live(p))
        return n;
    for (uint32_t i = 0; i < p->r_nips; i++) {
        int dup = 0;
        for (uint32_t k = 0; k < p->nips && !dup; k++)
            dup = p->ips[k].len == p->r_ips[i].len &&
                  memcmp(p->ips[k].ip, p->r_ips[i].ip, p->ips[k].len) == 0;
        n += !dup;
    }
    return n;
}

static double fleet_bytes(const struct lr_pol *p)
{
    return p->bytes + p->base + p->r_bytes;
}

/* entries by email: a chained hash table that only grows */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct lr_pol **tab;
static uint32_t tab_size, count;

static int grow(void)
{
    uint32_t n = tab_size ? tab_size * 2 : 1024;
    struct lr_pol **nt = calloc(n, sizeof(*nt));
    if (!nt)
        return -1;
    for (uint32_t i = 0; i < tab_size; i++)
        for (struct lr_pol *p = tab[i], *next; p; p = next) {
            next = p->next;
            p->next = nt[p->hash & (n - 1)];
            nt[p->hash & (n - 1)] = p;
        }
    free(tab);
    tab = nt;
    tab_size = n;
    return 0;
}

static struct lr_pol *find(const char *email, int create)
{
    uint32_t h = lr_fnv1a32((const uint8_t *)email, strlen(email));
    if (tab_size)
        for (struct lr_pol *p = tab[h & (tab_size - 1)]; p; p = p->next)
            if (p->hash == h && strcmp(p->email, email) == 0)
                return p;
    if (!create)
        return NULL;
    if ((count + 1 > tab_size) && grow() != 0)
        return NULL;
    struct lr_pol *p = calloc(1, sizeof(*p));
    if (!p || !(p->email = strdup(email))) {
        free(p);
        return NULL;
    }
    p->hash = h;
    p->last = -1;
    p->next = tab[h & (tab_size - 1)];
    tab[h & (tab_size - 1)] = p;
    count++;
    return p;
}

static int lr_policy_set_locked(const char *email, const struct lr_policy *pol)
{
    if (!email || !pol || pol->rate < 0 || pol->burst < 0 || pol->quota < 0)
        return LR_EINVAL;
    struct lr_pol *p = find(email, 1);
    if (!p)
        return LR_ENOMEM;
    p->p = *pol;
    if (p->p.rate > 0 && p->p.burst <= 0)
        p->p.burst = p->p.rate;
    if (p->tokens > p->p.burst)
        p->tokens = p->p.burst;
    return LR_OK;
}

static int lr_policy_usage_locked(const char *email, struct lr_policy_usage *out)
{
    struct lr_pol *p = email ? find(email, 0) : NULL;
    if (!p)
        return LR_EINVAL;
    out->bytes = fleet_bytes(p);
    out->conns = p->conns + (remote_live(p) ? p->r_conns : 0);
    out->ips = fleet_ips(p);
    return LR_OK;
}

static int lr_policy_reset_locked(const char *email)
{
    struct lr_pol *p = email ? find(email, 0) : NULL;
    if (!p)
        return LR_EINVAL;
    p->bytes = 0;
    p->base = 0;
    p->r_bytes = 0;
    p->reset_pending = 1;   /* the fleet's counter too, at the next sync */
    return LR_OK;
}

static const char *lr_policy_admit_locked(const char *email, const uint8_t *ip, int iplen,
                            struct lr_pol **out)
{
    *out = NULL;
    if (!email)
        return NULL;
    struct lr_pol *p = find(email, 1);
    if (!p)
        return NULL; /* out of memory: no policy rather than no service */
    if (p->p.quota > 0 && fleet_bytes(p) >= p->p.quota)
        return "quota exceeded";
    if (p->p.max_conns &&
        p->conns + (remote_live(p) ? p->r_conns : 0) >= p->p.max_conns)
        return "too many connections";
    struct ipc *slot = NULL;
    for (uint32_t i = 0; i < p->nips; i++)
        if (p->ips[i].len == iplen && memcmp(p->ips[i].ip, ip, (size_t)iplen) == 0)
            slot = &p->ips[i];
    if (!slot) {
        if (p->p.max_ips && fleet_ips(p) >= p->p.max_ips &&
            !(remote_live(p) && remote_has_ip(p, ip, iplen)))
            return "too many source addresses";
        if (p->nips < MAX_IPS_TRACKED) {
            struct ipc *n = realloc(p->ips, sizeof(*n) * (p->nips + 1));
            if (n) {
                p->ips = n;
                slot = &p->ips[p->nips++];
                memset(slot, 0, sizeof(*slot));
                memcpy(slot->ip, ip, (size_t)iplen);
                slot->len = (uint8_t)iplen;
            }
        }
    }
    if (slot)
        slot->n++;
    p->conns++;
    *out = p;
    return NULL;
}

static void lr_policy_release_locked(struct lr_pol *p, const uint8_t *ip, int iplen)
{
    if (!p)
        return;
    p->conns--;
    for (uint32_t i = 0; i < p->nips; i++)
        if (p->ips[i].len == iplen && memcmp(p->ips[i].ip, ip, (size_t)iplen) == 0) {
            if (--p->ips[i].n == 0)
                p->ips[i] = p->ips[--p->nips];
            break;
        }
}

static int lr_policy_charge_locked(struct lr_pol *p, double bytes)
{
    if (!p || bytes <= 0)
        return 0;
    p->bytes += bytes;
    if (p->p.rate > 0)
        p->tokens -= bytes;
    return p->p.quota > 0 && fleet_bytes(p) >= p->p.quota;
}

static double lr_policy_wait_locked(struct lr_pol *p, double now)
{
    if (!p || p->p.rate <= 0)
        return 0;
    if (p->last < 0) {
        p->last = now;
        p->tokens = p->p.burst;
    }
    p->tokens += (now - p->last) * p->p.rate;
    if (p->tokens > p->p.burst)
        p->tokens = p->p.burst;
    p->last = now;
    if (p->tokens >= 0)
        return 0;
    return -p->tokens / p->p.rate;
}

/* The public calls, each under the one lock. */
LR_API int lr_policy_set(const char *email, const struct lr_policy *pol)
{
    pthread_mutex_lock(&lock);
    int rc = lr_policy_set_locked(email, pol);
    pthread_mutex_unlock(&lock);
    return rc;
}

LR_API int lr_policy_usage(const char *email, struct lr_policy_usage *out)
{
    pthread_mutex_lock(&lock);
    int rc = lr_policy_usage_locked(email, out);
    pthread_mutex_unlock(&lock);
    return rc;
}

LR_API int lr_policy_reset(const char *email)
{
    pthread_mutex_lock(&lock);
    int rc = lr_policy_reset_locked(email);
    pthread_mutex_unlock(&lock);
    return rc;
}

const char *lr_policy_admit(const char *email, const uint8_t *ip, int iplen,
                            struct lr_pol **out)
{
    pthread_mutex_lock(&lock);
    const char *rc = lr_policy_admit_locked(email, ip, iplen, out);
    pthread_mutex_unlock(&lock);
    return rc;
}

void lr_policy_release(struct lr_pol *p, const uint8_t *ip, int iplen)
{
    pthread_mutex_lock(&lock);
    lr_policy_release_locked(p, ip, iplen);
    pthread_mutex_unlock(&lock);
}

int lr_policy_charge(struct lr_pol *p, double bytes)
{
    pthread_mutex_lock(&lock);
    int rc = lr_policy_charge_locked(p, bytes);
    pthread_mutex_unlock(&lock);
    return rc;
}

double lr_policy_wait(struct lr_pol *p, double now)
{
    pthread_mutex_lock(&lock);
    double rc = lr_policy_wait_locked(p, now);
    pthread_mutex_unlock(&lock);
    return rc;
}

void lr_policy_each(lr_policy_each_fn fn, void *ud)
{
    pthread_mutex_lock(&lock);
    for (uint32_t i = 0; i < tab_size; i++)
        for (struct lr_pol *p = tab[i]; p; p = p->next)
            fn(ud, p->email, p->conns, p->nips);
    pthread_mutex_unlock(&lock);
}

/* "email\tip\n" per (user, source address) with connections open. */
static size_t online_user(const struct lr_pol *p, char *out, size_t cap, size_t o)
{
    for (uint32_t i = 0; i < p->nips; i++) {
        char ip[INET6_ADDRSTRLEN];
        if (!inet_ntop(p->ips[i].len == 4 ? AF_INET : AF_INET6, p->ips[i].ip, ip, sizeof(ip)))
            continue;
        size_t el = strlen(p->email), il = strlen(ip), n = el + il + 2;
        if (o + n <= cap) {
            memcpy(out + o, p->email, el);
            out[o + el] = '\t';
            memcpy(out + o + el + 1, ip, il);
            out[o + n - 1] = '\n';
        }
        o += n;
    }
    return o;
}

LR_API size_t lr_policy_online(const char *email, char *out, size_t cap)
{
    size_t o = 0;
    pthread_mutex_lock(&lock);
    if (email) {
        struct lr_pol *p = find(email, 0);
        if (p)
            o = online_user(p, out, cap, o);
    } else {
        for (uint32_t i = 0; i < tab_size; i++)
            for (struct lr_pol *p = tab[i]; p; p = p->next)
                o = online_user(p, out, cap, o);
    }
    pthread_mutex_unlock(&lock);
    return o;
}

/* ------------------------------------------------------------ fleet
 *
 * luaray.cluster (daemon/fleet.c) syncs this table with the other nodes
 * once a second: what this node has open and its byte counts go out, the
 * other nodes' come back as the r_* fields of a new generation, which
 * admissions use once lr_policy_fleet_commit makes it current. */

void lr_policy_fleet_each(lr_policy_fleet_fn fn, void *ud)
{
    pthread_mutex_lock(&lock);
    for (uint32_t i = 0; i < tab_size; i++)
        for (struct lr_pol *p = tab[i]; p; p = p->next) {
            if (!p->conns && !p->reset_pending && p->p.quota <= 0 && p->bytes <= 0 &&
                !p->p.max_conns && !p->p.max_ips)
                continue;
            char ips[1024];
            size_t o = 0;
            ips[0] = 0;
            for (uint32_t k = 0; k < p->nips && k < 32; k++) {
                char t[INET6_ADDRSTRLEN];
                if (!inet_ntop(p->ips[k].len == 4 ? AF_INET : AF_INET6, p->ips[k].ip, t,
                               sizeof(t)))
                    continue;
                int n = snprintf(ips + o, sizeof(ips) - o, "%s%s", o ? "," : "", t);
                if (n < 0 || (size_t)n >= sizeof(ips) - o)
                    break;
                o += (size_t)n;
            }
            double abs = p->base_known ? p->base + p->bytes : -1;
            fn(ud, p->email, p->conns, ips, abs, p->rgen, p->reset_pending);
        }
    pthread_mutex_unlock(&lock);
}

void lr_policy_fleet_begin(void)
{
    pthread_mutex_lock(&lock);
    fleet_next = fleet_gen + 1;
    pthread_mutex_unlock(&lock);
}

static void parse_ips(struct lr_pol *p, const char *csv)
{
    p->r_nips = 0;
    while (csv && *csv && p->r_nips < MAX_IPS_TRACKED) {
        char t[INET6_ADDRSTRLEN + 1];
        size_t n = strcspn(csv, ",");
        if (n < sizeof(t)) {
            memcpy(t, csv, n);
            t[n] = 0;
            uint8_t b[16];
            int len = 0;
            if (inet_pton(AF_INET, t, b) == 1)
                len = 4;
            else if (inet_pton(AF_INET6, t, b) == 1)
                len = 16;
            if (len && !remote_has_ip(p, b, len)) {
                struct ipc *ni = realloc(p->r_ips, sizeof(*ni) * (p->r_nips + 1));
                if (!ni)
                    return;
                p->r_ips = ni;
                memset(&ni[p->r_nips], 0, sizeof(*ni));
                memcpy(ni[p->r_nips].ip, b, (size_t)len);
                ni[p->r_nips].len = (uint8_t)len;
                p->r_nips++;
            }
        }
        csv += n;
        if (*csv == ',')
            csv++;
    }
}

void lr_policy_fleet_remote(const char *email, uint32_t conns, const char *ips)
{
    pthread_mutex_lock(&lock);
    struct lr_pol *p = find(email, 1);
    if (p) {
        if (p->r_gen != fleet_next) {
            p->r_gen = fleet_next;
            p->r_conns = 0;
            p->r_nips = 0;
        }
        p->r_conns += conns;
        /* append: several nodes may name the same user */
        uint32_t keep = p->r_nips;
        struct ipc *old = keep ? malloc(sizeof(*old) * keep) : NULL;
        if (old)
            memcpy(old, p->r_ips, sizeof(*old) * keep);
        parse_ips(p, ips);
        for (uint32_t i = 0; old && i < keep; i++)
            if (!remote_has_ip(p, old[i].ip, old[i].len)) {
                struct ipc *ni = realloc(p->r_ips, sizeof(*ni) * (p->r_nips + 1));
                if (!ni)
                    break;
                p->r_ips = ni;
                ni[p->r_nips++] = old[i];
            }
        free(old);
    }
    pthread_mutex_unlock(&lock);
}

void lr_policy_fleet_bytes(const char *email, double remote, const char *rgen, double own,
                           int sent_reset, int epoch_changed)
{
    pthread_mutex_lock(&lock);
    struct lr_pol *p = find(email, 1);
    if (p) {
        int rgen_changed = strcmp(p->rgen, rgen) != 0;
        if (epoch_changed) {
            /* Redis lost its data: what this node counted goes out again */
        } else if (sent_reset) {
            p->reset_pending = 0;
        } else if (!p->base_known) {
            p->base = own;   /* counted before this process started */
        } else if (rgen_changed) {
            p->base = -p->bytes;   /* reset at another node */
        }
        p->base_known = 1;
        snprintf(p->rgen, sizeof(p->rgen), "%s", rgen);
        if (!epoch_changed)
            p->r_bytes = remote;
    }
    pthread_mutex_unlock(&lock);
}

void lr_policy_fleet_commit(int fresh)
{
    pthread_mutex_lock(&lock);
    if (fresh)
        fleet_gen = fleet_next;
    fleet_fresh = fresh;
    pthread_mutex_unlock(&lock);
}
