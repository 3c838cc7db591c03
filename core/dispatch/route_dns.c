/*
 * The routing name cache (route_dns.h): 256 slots per thread, direct-mapped
 * by a hash of the name (a collision replaces the older entry), allocated
 * on a thread's first use and freed with the thread.
 */
#include <pthread.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dispatch/route_dns.h"

#define SLOTS 256
#define TTL_OK 60.0
#define TTL_FAIL 10.0

struct slot {
    char host[256];
    double expires;
    int n;
    uint8_t ips[LR_DNS_MAX_ADDRS * 16];
};

static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void make_key(void)
{
    (void)pthread_key_create(&key, free);
}

static struct slot *table(int create)
{
    pthread_once(&once, make_key);
    struct slot *t = pthread_getspecific(key);
    if (!t && create) {
        t = calloc(SLOTS, sizeof(*t));
        if (t && pthread_setspecific(key, t) != 0) {
            free(t);
            t = NULL;
        }
    }
    return t;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct slot *slot_of(struct slot *t, const char *host)
{
    uint32_t h = 2166136261u;
    for (const char *p = host; *p; p++) {
        h ^= (uint8_t)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        h *= 16777619u;
    }
    return &t[h % SLOTS];
}

int lr_route_dns_get(const char *host, uint8_t *out, int *n)
{
    struct slot *t = table(0);
    if (!t || !host || strlen(host) >= sizeof(t->host))
        return 0;
    struct slot *s = slot_of(t, host);
    if (!s->host[0] || strcasecmp(s->host, host) != 0 || s->expires <= now())
        return 0;
    *n = s->n;
    memcpy(out, s->ips, (size_t)s->n * 16);
    return 1;
}

void lr_route_dns_put(const char *host, const uint8_t *ips, int n)
{
    struct slot *t = table(1);
    if (!t || !host || strlen(host) >= sizeof(t->host))
        return;
    if (n > LR_DNS_MAX_ADDRS)
        n = LR_DNS_MAX_ADDRS;
    struct slot *s = slot_of(t, host);
    snprintf(s->host, sizeof(s->host), "%s", host);
    s->n = n;
    memcpy(s->ips, ips, (size_t)n * 16);
    s->expires = now() + (n ? TTL_OK : TTL_FAIL);
}

int lr_route_dns_bytes(const struct lr_addr *addrs, int n, uint8_t *out)
{
    int k = 0;
    for (int i = 0; i < n && k < LR_DNS_MAX_ADDRS; i++) {
        uint8_t ip[16];
        int len = lr_addr_ip_bytes(&addrs[i], ip);
        if (len == 4) {
            memset(out + 16 * k, 0, 10);
            out[16 * k + 10] = out[16 * k + 11] = 0xff;
            memcpy(out + 16 * k + 12, ip, 4);
            k++;
        } else if (len == 16) {
            memcpy(out + 16 * k, ip, 16);
            k++;
        }
    }
    return k;
}
