/*
 * Live users (live.h).  The changes are kept in a list for the process
 * (adds with their IDs, removals), and every generation built from now on
 * takes them in (lr_live_merge: the users and each VMess inbound's user
 * list), so they hold across reloads.  A change asks the main thread to
 * rebuild as SIGHUP does (the config files are read again, the unchanged
 * inbounds' user tables are shared, nothing pauses the loops), and the
 * workers follow it; at each install every worker closes the connections
 * of removed users.
 *
 * The checks of an add or removal (does the inbound exist, is the user
 * there) use what the main thread last installed (a snapshot of each
 * VMess inbound's users), so they may be made from any thread (a Lua
 * hook on a worker).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "daemon/conf.h"
#include "daemon/daemon.h"
#include "daemon/live.h"

struct entry {
    char *email;
    char *inbound;               /* NULL: every VMess inbound */
    uint8_t id[16];
    uint32_t level, alter_id;
    uint8_t del;                 /* a removal */
};

struct snap_ib {
    char *tag;
    char **emails;               /* sorted */
    uint32_t n;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct entry *ents;
static uint32_t nents;
static struct snap_ib *snap;
static uint32_t nsnap;
static int have_snap;
static struct lr_daemon *live_main;
static uint32_t nlive;           /* users added (for the log) */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static const struct snap_ib *snap_find(const char *tag)
{
    for (uint32_t i = 0; i < nsnap; i++)
        if (strcmp(snap[i].tag, tag) == 0)
            return &snap[i];
    return NULL;
}

static int snap_has(const struct snap_ib *s, const char *email)
{
    return s && bsearch(&email, s->emails, s->n, sizeof(char *), cmp_str) != NULL;
}

static int same_scope(const char *a, const char *b)
{
    return !a || !b || strcmp(a, b) == 0;
}

static void entry_free(struct entry *e)
{
    free(e->email);
    free(e->inbound);
}

/* Drops the entries of `email` whose scope meets `inbound` and whose
 * kind is `del` (mu held). */
static void drop(const char *email, const char *inbound, int del)
{
    uint32_t o = 0;
    for (uint32_t i = 0; i < nents; i++) {
        if (ents[i].del == del && strcmp(ents[i].email, email) == 0 &&
            same_scope(ents[i].inbound, inbound)) {
            if (!del)
                nlive--;
            entry_free(&ents[i]);
            continue;
        }
        ents[o++] = ents[i];
    }
    nents = o;
}

static int push(const char *email, const char *inbound, const uint8_t *id, uint32_t level,
                uint32_t alter_id, int del)
{
    struct entry *n = realloc(ents, sizeof(*n) * (nents + 1));
    if (!n)
        return -1;
    ents = n;
    struct entry *e = &ents[nents];
    memset(e, 0, sizeof(*e));
    e->email = strdup(email);
    e->inbound = inbound ? strdup(inbound) : NULL;
    if (!e->email || (inbound && !e->inbound)) {
        entry_free(e);
        return -1;
    }
    if (id)
        memcpy(e->id, id, 16);
    e->level = level;
    e->alter_id = alter_id;
    e->del = (uint8_t)del;
    nents++;
    if (!del)
        nlive++;
    return 0;
}

/* Is `email` a user of inbound `tag` (NULL: of any) now (mu held)? */
static int present(const char *email, const char *tag)
{
    for (uint32_t i = 0; i < nsnap; i++)
        if ((!tag || strcmp(snap[i].tag, tag) == 0) && snap_has(&snap[i], email))
            return 1;
    /* added, not yet installed */
    for (uint32_t i = 0; i < nents; i++)
        if (!ents[i].del && strcmp(ents[i].email, email) == 0 &&
            same_scope(ents[i].inbound, tag))
            return 1;
    return 0;
}

static void kick(struct lr_daemon *d)
{
    ev_async_send(d->rt.net.loop, &d->live_w);
}

int lr_live_add(struct lr_daemon *d, const char *inbound, const uint8_t id[16],
                const char *email, uint32_t level, uint32_t alter_id, char *err,
                size_t errlen)
{
    if (!d)
        d = live_main;
    if (!d || !d->config_path) {
        snprintf(err, errlen, "live users need a running daemon with a config file (-c)");
        return -1;
    }
    if (!email || !*email || strlen(email) > 255 || strpbrk(email, "\r\n\t")) {
        snprintf(err, errlen, "a user needs an email (1-255 characters, no control characters)");
        return -1;
    }
    if (alter_id > 65535 || level > 255) {
        snprintf(err, errlen, "alter_id must be 0..65535 and level 0..255");
        return -1;
    }
    pthread_mutex_lock(&mu);
    int rc = -1;
    if (!have_snap) {
        snprintf(err, errlen, "the daemon is still starting");
    } else if (inbound && !snap_find(inbound)) {
        snprintf(err, errlen, "no VMess inbound '%s'", inbound);
    } else if (!inbound && nsnap == 0) {
        snprintf(err, errlen, "no VMess inbound");
    } else if (present(email, inbound)) {
        snprintf(err, errlen, "user '%s' already exists%s%s%s", email,
                 inbound ? " on inbound '" : "", inbound ? inbound : "", inbound ? "'" : "");
    } else {
        /* one ID per email: a second add of the same user elsewhere
         * must bring the same ID */
        for (uint32_t i = 0; i < nents; i++)
            if (!ents[i].del && strcmp(ents[i].email, email) == 0 &&
                memcmp(ents[i].id, id, 16) != 0) {
                snprintf(err, errlen, "user '%s' already exists with another id", email);
                goto out;
            }
        drop(email, inbound, 1);
        if (push(email, inbound, id, level, alter_id, 0) != 0)
            snprintf(err, errlen, "out of memory");
        else
            rc = 0;
    }
out:
    pthread_mutex_unlock(&mu);
    if (rc == 0) {
        lr_info("live users: %s added%s%s", email, inbound ? " to inbound " : "",
                inbound ? inbound : "");
        kick(d);
    }
    return rc;
}

int lr_live_remove(struct lr_daemon *d, const char *inbound, const char *email, char *err,
                   size_t errlen)
{
    if (!d)
        d = live_main;
    if (!d || !d->config_path) {
        snprintf(err, errlen, "live users need a running daemon with a config file (-c)");
        return -1;
    }
    if (!email || !*email) {
        snprintf(err, errlen, "which user? (an email)");
        return -1;
    }
    pthread_mutex_lock(&mu);
    int rc = -1;
    if (inbound && !snap_find(inbound)) {
        snprintf(err, errlen, "no VMess inbound '%s'", inbound);
    } else if (!present(email, inbound)) {
        snprintf(err, errlen, "no user '%s'%s%s%s", email, inbound ? " on inbound '" : "",
                 inbound ? inbound : "", inbound ? "'" : "");
    } else {
        drop(email, inbound, 0);
        drop(email, inbound, 1);
        if (push(email, inbound, NULL, 0, 0, 1) != 0)
            snprintf(err, errlen, "out of memory");
        else
            rc = 0;
    }
    pthread_mutex_unlock(&mu);
    if (rc == 0) {
        lr_info("live users: %s removed%s%s", email, inbound ? " from inbound " : "",
                inbound ? inbound : "");
        kick(d);
    }
    return rc;
}

/* --- what builds and installs call (daemon.c) ------------------------ */

void lr_live_set_main(struct lr_daemon *d)
{
    pthread_mutex_lock(&mu);
    live_main = d;
    pthread_mutex_unlock(&mu);
}

static int conf_has_email(const struct lr_conf *c, uint32_t n, const char *email, int32_t *at)
{
    for (uint32_t k = 0; k < n; k++)
        if (strcmp(c->users[k].email, email) == 0) {
            *at = (int32_t)k;
            return 1;
        }
    return 0;
}

static int list_has(char **v, uint32_t n, const char *s)
{
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return 1;
    return 0;
}

int lr_live_merge(struct lr_conf *c, char *err, size_t errlen)
{
    pthread_mutex_lock(&mu);
    if (nents == 0) {
        pthread_mutex_unlock(&mu);
        return 0;
    }
    uint32_t orig = c->nusers;
    int rc = 0;
    uint8_t *skip = calloc(nents, 1);
    if (!skip) {
        pthread_mutex_unlock(&mu);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* the users: a live user the config now declares itself (same email)
     * is the config's; one whose ID another config user has is left out */
    for (uint32_t i = 0; i < nents && rc == 0; i++) {
        struct entry *e = &ents[i];
        int32_t at;
        if (e->del)
            continue;
        if (conf_has_email(c, c->nusers, e->email, &at)) {
            if (memcmp(c->users[at].id, e->id, 16) != 0 && (uint32_t)at < orig) {
                lr_warn("live users: %s is declared by the config with another id; the "
                        "config's stands", e->email);
                skip[i] = 1;
            }
            continue;
        }
        int clash = 0;
        for (uint32_t k = 0; k < c->nusers; k++)
            if (memcmp(c->users[k].id, e->id, 16) == 0)
                clash = 1;
        if (clash) {
            lr_warn("live users: %s has the id of another user; left out", e->email);
            skip[i] = 1;
            continue;
        }
        char uuid[37];
        lr_uuid_format(e->id, uuid);
        uuid[36] = 0;
        if (lr_conf_user(c, uuid, e->email, e->alter_id, e->level) != LR_OK)
            rc = -1;
    }
    /* each VMess inbound's list: whom it had (everyone declared, when
     * the config gave no list), plus the live users for it, minus the
     * removed ones */
    for (uint32_t i = 0; i < c->nib && rc == 0; i++) {
        struct lr_conf_ib *ci = &c->ib[i];
        if (ci->ib.type != LR_IB_VMESS)
            continue;
        const char *tag = ci->ib.tag;
        uint32_t cap = (ci->nusers ? ci->nusers : orig) + nents + 1, n = 0;
        char **v = calloc(cap, sizeof(*v));
        if (!v) {
            rc = -1;
            break;
        }
        if (ci->nusers)
            for (uint32_t k = 0; k < ci->nusers; k++)
                v[n++] = ci->users[k];
        else
            for (uint32_t k = 0; k < orig; k++)
                v[n++] = c->users[k].email;
        for (uint32_t j = 0; j < nents; j++)
            if (!ents[j].del && !skip[j] && same_scope(ents[j].inbound, tag) &&
                !list_has(v, n, ents[j].email))
                v[n++] = ents[j].email;
        uint32_t o = 0;
        for (uint32_t k = 0; k < n; k++) {
            int gone = 0;
            for (uint32_t j = 0; j < nents && !gone; j++)
                gone = ents[j].del && same_scope(ents[j].inbound, tag) &&
                       strcmp(ents[j].email, v[k]) == 0;
            if (!gone)
                v[o++] = v[k];
        }
        n = o;
        /* the new list, copied (v points into what it replaces) */
        char **nv = calloc(n ? n : 1, sizeof(*nv));
        for (uint32_t k = 0; nv && k < n; k++)
            if (!(nv[k] = strdup(v[k]))) {
                for (uint32_t q = 0; q < k; q++)
                    free(nv[q]);
                free(nv);
                nv = NULL;
            }
        free(v);
        if (!nv) {
            rc = -1;
            break;
        }
        for (uint32_t k = 0; k < ci->nusers; k++)
            free(ci->users[k]);
        free(ci->users);
        ci->users = nv;
        ci->nusers = n;
        ci->no_users = n == 0;
    }
    free(skip);
    pthread_mutex_unlock(&mu);
    if (rc != 0)
        snprintf(err, errlen, "live users: out of memory");
    return rc;
}

struct lr_live_snap {
    struct snap_ib *v;
    uint32_t n;
};

static void snap_free(struct snap_ib *v, uint32_t n)
{
    for (uint32_t i = 0; v && i < n; i++) {
        for (uint32_t k = 0; k < v[i].n; k++)
            free(v[i].emails[k]);
        free(v[i].emails);
        free(v[i].tag);
    }
    free(v);
}

void lr_live_snap_free(struct lr_live_snap *s)
{
    if (s) {
        snap_free(s->v, s->n);
        free(s);
    }
}

struct lr_live_snap *lr_live_snapshot(const struct lr_conf *c)
{
    struct lr_live_snap *s = calloc(1, sizeof(*s));
    if (!s || !(s->v = calloc(c->nib ? c->nib : 1, sizeof(*s->v)))) {
        free(s);
        return NULL;
    }
    for (uint32_t i = 0; i < c->nib; i++) {
        const struct lr_conf_ib *ci = &c->ib[i];
        if (ci->ib.type != LR_IB_VMESS || ci->ib.is_detour)
            continue;
        struct snap_ib *b = &s->v[s->n++];
        b->tag = strdup(ci->ib.tag);
        b->emails = calloc(c->nusers ? c->nusers : 1, sizeof(char *));
        if (!b->tag || !b->emails) {
            lr_live_snap_free(s);
            return NULL;
        }
        for (uint32_t k = 0; k < c->nusers; k++) {
            const char *key = c->users[k].email;
            int in = ci->no_users ? 0
                     : ci->nusers == 0 ? 1
                     : bsearch(&key, ci->users, ci->nusers, sizeof(char *), cmp_str) != NULL;
            if (in && !(b->emails[b->n++] = strdup(key))) {
                lr_live_snap_free(s);
                return NULL;
            }
        }
        qsort(b->emails, b->n, sizeof(char *), cmp_str);
    }
    return s;
}

void lr_live_installed(struct lr_daemon *d, struct lr_conf *c)
{
    if (d->rt.worker == 0 && c->live_snap) {
        /* the snapshot the checks use: each VMess inbound's users now */
        pthread_mutex_lock(&mu);
        snap_free(snap, nsnap);
        snap = c->live_snap->v;
        nsnap = c->live_snap->n;
        have_snap = 1;
        pthread_mutex_unlock(&mu);
        free(c->live_snap);
        c->live_snap = NULL;
    }
    /* the connections of removed users close, on every generation */
    pthread_mutex_lock(&mu);
    uint32_t closed = 0;
    for (struct lr_conn *cn = d->rt.net.conns; cn; cn = cn->next) {
        if (cn->user < 0 || !cn->gen || !cn->ib || cn->doom)
            continue;
        const char *email = cn->gen->users[cn->user].email;
        for (uint32_t j = 0; j < nents; j++)
            if (ents[j].del && strcmp(ents[j].email, email) == 0 &&
                same_scope(ents[j].inbound, cn->ib->tag)) {
                cn->doom = "user removed";
                lr_conn_kick(cn);
                closed++;
                break;
            }
    }
    pthread_mutex_unlock(&mu);
    if (closed)
        lr_info("live users: closing %u connections of removed users", closed);
}

size_t lr_live_list(char *out, size_t cap)
{
    size_t o = 0;
    pthread_mutex_lock(&mu);
    for (uint32_t i = 0; i < nents; i++) {
        char uuid[37];
        lr_uuid_format(ents[i].id, uuid);
        uuid[36] = 0;
        char line[700];
        int k = snprintf(line, sizeof(line), "%s\t%s\t%s\t%u\t%u\t%s\n",
                         ents[i].del ? "removed" : "added", ents[i].email,
                         ents[i].inbound ? ents[i].inbound : "*", ents[i].level,
                         ents[i].alter_id, ents[i].del ? "-" : uuid);
        if (k > 0 && o + (size_t)k <= cap)
            memcpy(out + o, line, (size_t)k);
        o += k > 0 ? (size_t)k : 0;
    }
    pthread_mutex_unlock(&mu);
    return o;
}

/* --- api.h ------------------------------------------------------------ */

LR_API int lr_live_user_add(const char *inbound, const char *uuid, const char *email,
                            uint32_t level, uint32_t alter_id, char *err, size_t errlen)
{
    uint8_t id[16];
    if (!uuid || lr_uuid_parse(uuid, strlen(uuid), id) != LR_OK) {
        snprintf(err, errlen, "invalid user id (a UUID)");
        return -1;
    }
    return lr_live_add(NULL, inbound, id, email, level, alter_id, err, errlen);
}

LR_API int lr_live_user_remove(const char *inbound, const char *email, char *err,
                               size_t errlen)
{
    return lr_live_remove(NULL, inbound, email, err, errlen);
}

LR_API size_t lr_live_user_list(char *out, size_t cap)
{
    return lr_live_list(out, cap);
}
