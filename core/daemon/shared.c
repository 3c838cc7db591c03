/*
 * luaray.shared: a key/value and counter store in C memory.  It belongs
 * to the process, not to a generation, so it survives every reload; Lua
 * reaches it through the lr_shared_* FFI calls (copies in, copies out).
 * A chained hash table; the total size is capped.
 * Worker threads share it: every public call holds one mutex.
 */
#include <pthread.h>
#include <string.h>

#include "base/base.h"

#define SHARED_KEY_MAX 256
#define SHARED_VAL_MAX 65536
#define SHARED_CAP (64u << 20)

struct entry {
    struct entry *next;
    uint32_t hash;
    uint16_t klen;
    uint8_t is_num;
    double num;
    char *val;
    size_t vlen;
    char key[];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry **tab;
static uint32_t tab_size, count;
static size_t bytes;

static uint32_t hash(const char *k, size_t n)
{
    return lr_fnv1a32((const uint8_t *)k, n);
}

static int grow(void)
{
    uint32_t nsize = tab_size ? tab_size * 2 : 256;
    struct entry **nt = calloc(nsize, sizeof(*nt));
    if (!nt)
        return LR_ENOMEM;
    for (uint32_t i = 0; i < tab_size; i++)
        for (struct entry *e = tab[i], *next; e; e = next) {
            next = e->next;
            e->next = nt[e->hash & (nsize - 1)];
            nt[e->hash & (nsize - 1)] = e;
        }
    free(tab);
    tab = nt;
    tab_size = nsize;
    return LR_OK;
}

static struct entry **find(const char *k, size_t n, uint32_t h)
{
    if (!tab_size)
        return NULL;
    struct entry **pp = &tab[h & (tab_size - 1)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->klen == n && memcmp((*pp)->key, k, n) == 0)
            return pp;
    return NULL;
}

static struct entry *get_or_add(const char *k, size_t n, int *rc)
{
    uint32_t h = hash(k, n);
    struct entry **pp = find(k, n, h);
    *rc = LR_OK;
    if (pp)
        return *pp;
    if (n == 0 || n > SHARED_KEY_MAX || bytes + n + 64 > SHARED_CAP) {
        *rc = LR_ETOOBIG;
        return NULL;
    }
    if (count + 1 > tab_size * 2 && (*rc = grow()) != LR_OK)
        return NULL;
    if (!tab_size && (*rc = grow()) != LR_OK)
        return NULL;
    struct entry *e = calloc(1, sizeof(*e) + n);
    if (!e) {
        *rc = LR_ENOMEM;
        return NULL;
    }
    memcpy(e->key, k, n);
    e->klen = (uint16_t)n;
    e->hash = h;
    e->next = tab[h & (tab_size - 1)];
    tab[h & (tab_size - 1)] = e;
    count++;
    bytes += n + sizeof(*e);
    return e;
}

static int lr_shared_set_locked(const char *key, size_t klen, const char *val,
                         size_t vlen)
{
    int rc;
    if (vlen > SHARED_VAL_MAX || bytes + vlen > SHARED_CAP)
        return LR_ETOOBIG;
    struct entry *e = get_or_add(key, klen, &rc);
    if (!e)
        return rc;
    char *v = malloc(vlen ? vlen : 1);
    if (!v)
        return LR_ENOMEM;
    memcpy(v, val, vlen);
    bytes -= e->vlen;
    free(e->val);
    e->val = v;
    e->vlen = vlen;
    e->is_num = 0;
    bytes += vlen;
    return LR_OK;
}

static int lr_shared_get_locked(const char *key, size_t klen, char *out, size_t cap,
                         size_t *vlen, int32_t *is_num)
{
    struct entry **pp = find(key, klen, hash(key, klen));
    if (!pp)
        return LR_EINVAL;
    struct entry *e = *pp;
    *is_num = e->is_num;
    if (e->is_num) {
        char tmp[64];
        int n = snprintf(tmp, sizeof(tmp), "%.17g", e->num);
        *vlen = (size_t)n;
        if ((size_t)n > cap)
            return LR_ETOOBIG;
        memcpy(out, tmp, (size_t)n);
        return LR_OK;
    }
    *vlen = e->vlen;
    if (e->vlen > cap)
        return LR_ETOOBIG;
    memcpy(out, e->val, e->vlen);
    return LR_OK;
}

static int lr_shared_incr_locked(const char *key, size_t klen, double delta,
                          double *result)
{
    int rc;
    struct entry *e = get_or_add(key, klen, &rc);
    if (!e)
        return rc;
    if (e->val && !e->is_num)
        return LR_EINVAL;
    e->is_num = 1;
    e->num += delta;
    *result = e->num;
    return LR_OK;
}

static int lr_shared_delete_locked(const char *key, size_t klen)
{
    struct entry **pp = find(key, klen, hash(key, klen));
    if (!pp)
        return LR_OK;
    struct entry *e = *pp;
    *pp = e->next;
    bytes -= e->vlen + e->klen + sizeof(*e);
    free(e->val);
    free(e);
    count--;
    return LR_OK;
}

static uint32_t lr_shared_count_locked(void)
{
    return count;
}

/* The public calls, each under the one lock. */
LR_API int lr_shared_set(const char *key, size_t klen, const char *val, size_t vlen)
{
    pthread_mutex_lock(&lock);
    int rc = lr_shared_set_locked(key, klen, val, vlen);
    pthread_mutex_unlock(&lock);
    return rc;
}

LR_API int lr_shared_get(const char *key, size_t klen, char *out, size_t cap, size_t *vlen,
                         int32_t *is_num)
{
    pthread_mutex_lock(&lock);
    int rc = lr_shared_get_locked(key, klen, out, cap, vlen, is_num);
    pthread_mutex_unlock(&lock);
    return rc;
}

LR_API int lr_shared_incr(const char *key, size_t klen, double delta, double *result)
{
    pthread_mutex_lock(&lock);
    int rc = lr_shared_incr_locked(key, klen, delta, result);
    pthread_mutex_unlock(&lock);
    return rc;
}

LR_API int lr_shared_delete(const char *key, size_t klen)
{
    pthread_mutex_lock(&lock);
    int rc = lr_shared_delete_locked(key, klen);
    pthread_mutex_unlock(&lock);
    return rc;
}

LR_API uint32_t lr_shared_count(void)
{
    pthread_mutex_lock(&lock);
    uint32_t rc = lr_shared_count_locked();
    pthread_mutex_unlock(&lock);
    return rc;
}
