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
};

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
    out->bytes = p->bytes;
    out->conns = p->conns;
    out->ips = p->nips;
    return LR_OK;
}

static int lr_policy_reset_locked(const char *email)
{
    struct lr_pol *p = email ? find(email, 0) : NULL;
    if (!p)
        return LR_EINVAL;
    p->bytes = 0;
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
    if (p->p.quota > 0 && p->bytes >= p->p.quota)
        return "quota exceeded";
    if (p->p.max_conns && p->conns >= p->p.max_conns)
        return "too many connections";
    struct ipc *slot = NULL;
    for (uint32_t i = 0; i < p->nips; i++)
        if (p->ips[i].len == iplen && memcmp(p->ips[i].ip, ip, (size_t)iplen) == 0)
            slot = &p->ips[i];
    if (!slot) {
        if (p->p.max_ips && p->nips >= p->p.max_ips)
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
    return p->p.quota > 0 && p->bytes >= p->p.quota;
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
