/*
 * Generations (model.h): reference counts, and freeing one with all it
 * owns.  Who frees a released generation, and where, is its worker's
 * owner's choice (lr_worker.release: the daemon's reaper thread).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dispatch/model.h"
#include "route/route.h"
#include "script/bridge.h"
#include "stream/tls.h"

void lr_transport_free(struct lr_transport *tp)
{
    free(tp->path);
    free(tp->host);
    free(tp->service_name);
    memset(tp, 0, sizeof(*tp));
}

void lr_tls_free(struct lr_tls *t)
{
    if (t->ctx)
        lr_tls_ctx_free(t->ctx);
    for (uint32_t i = 0; i < t->ncerts; i++) {
        free(t->certs[i].cert);
        free(t->certs[i].key);
    }
    free(t->certs);
    free(t->server_name);
    free(t->ca);
    for (uint32_t i = 0; i < t->nalpn; i++)
        free(t->alpn[i]);
    free(t->alpn);
    memset(t, 0, sizeof(*t));
}

void lr_gen_ref(struct lr_gen *g)
{
    g->refs++;
}

void lr_gen_unref(struct lr_gen *g)
{
    if (--g->refs > 0)
        return;
    if (g->rt && g->rt->release)
        g->rt->release(g);
    else
        lr_gen_free(g);
}

static void inbound_free(struct lr_inbound *ib)
{
    if (ib->fd >= 0)
        close(ib->fd);
    if (ib->ufd > 0) /* a UDP socket never installed (uin is the loop's) */
        close(ib->ufd);
    free(ib->to_host);
    free(ib->tag);
    free(ib->host);
    lr_users_free(ib->users);
    free(ib->user_map);
    for (uint32_t k = 0; k < ib->naccounts; k++) {
        free(ib->accounts[k].user);
        free(ib->accounts[k].pass);
    }
    free(ib->accounts);
    free(ib->dyn_cmd);
    lr_tls_free(&ib->tls);
    lr_transport_free(&ib->tp);
    free(ib->fallback_host);
    free(ib->trusted);
}

void lr_gen_free(struct lr_gen *g)
{
    for (uint32_t i = 0; i < g->nib; i++)
        inbound_free(&g->ib[i]);
    free(g->ib);
    for (uint32_t i = 0; i < g->nob; i++) {
        free(g->ob[i].tag);
        free(g->ob[i].server_host);
        lr_tls_free(&g->ob[i].tls);
        lr_transport_free(&g->ob[i].tp);
    }
    free(g->ob);
    for (uint32_t i = 0; i < g->nrules; i++)
        lr_rule_free(&g->rules[i]);
    free(g->rules);
    for (uint32_t i = 0; i < g->nusers; i++)
        free(g->users[i].email);
    if (g->users)
        lr_wipe(g->users, sizeof(*g->users) * g->nusers);
    free(g->users);
    if (g->script)
        lr_scripts->destroy(g->script);
    free(g);
}


