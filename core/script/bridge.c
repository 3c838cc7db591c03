/*
 * script/bridge.c: the only C file that includes lua.h.  Each generation
 * owns one Lua state made here; it holds the config's hooks.  C enters Lua
 * only through lua_pcall with an error handler, from the loop; Lua reaches
 * C only through the FFI API of luaray/api.h (the executable exports it
 * with -Wl,-E) and the functions registered here.
 *
 * Containment (the scripts are trusted, but mistakes happen): every state
 * has a memory cap enforced by its allocator, and config code runs under a
 * budget (a hook call: 50 million instructions and 0.25 s by default,
 * luaray.budget changes both; loading the config: 5 s).  The budget is
 * enforced from three sides, because LuaJIT runs debug hooks only between
 * interpreted bytecodes (config code is kept out of the JIT, see
 * config.lua):
 *
 *   - a count hook, set by the state's own thread for the run, counts
 *     instructions and checks a flag every 1000 of them;
 *   - a watchdog thread (one per process) sets that flag when a run passes
 *     its wall-clock deadline.  It never touches a lua_State: LuaJIT's
 *     lua_sethook from another thread would race with the trace recorder
 *     (it rewrites the dispatch table and the JIT state);
 *   - the C functions a hook can make run long count their work and check
 *     the flag too: string.find/match/gmatch/gsub use our own matcher
 *     (script/pattern.c: LuaJIT's cannot be interrupted, and a
 *     backtracking pattern runs for seconds), table.sort is our own heap
 *     sort.  gsub (the one library function whose C frame is large and
 *     that calls back into Lua) refuses to nest deeper than 1 MiB of C
 *     stack: LuaJIT has no C-stack limit, and a hook recursing through
 *     gsub would overflow the thread's stack.
 *
 * Once a run is over budget it is poisoned: the error is raised again at
 * every instruction (the count hook goes to 1) and at every entry to those
 * C functions, so neither pcall, nor an xpcall handler (whose own errors
 * LuaJIT turns into "error in error handling"), nor a loop around them can
 * go on.  The error unwinds to C, which reports the first message
 * (file:line where the budget ran out).
 *
 * A failing accept/auth/route hook refuses its connection; connect/close
 * failures are logged (style.md 7).
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "base/log.h"
#include "daemon/daemon.h"
#include "script/bridge.h"
#include "script/embedded.h"
#include "script/pattern.h"

#define SCRIPT_MEM_LIMIT (64u << 20)
/* extra memory a state may use to build its budget error at the cap */
#define BUDGET_MEM_SLACK (64u << 10)
/* hook calls: the defaults luaray.budget { seconds =, instructions = } changes */
#define HOOK_SECONDS 0.25
#define HOOK_INSTRUCTIONS 50000000ull
/* loading the config (start, -t, SIGHUP, link) */
#define LOAD_SECONDS 5.0
/* the count hook fires every HOOK_EVERY interpreted instructions */
#define HOOK_EVERY 1000
/* C stack a run may use below its entry before gsub refuses to nest */
#define CSTACK_LIMIT (1u << 20)
/* how often the watchdog looks at running budgets */
#define WATCHDOG_TICK_NS 10000000ll
/* how long it keeps ticking after the last run it saw, before it sleeps */
#define WATCHDOG_LINGER_NS 2000000000ll

/* RUN_CTL: one resume of a control coroutine (luaray.every / spawn),
 * with the hook's budget */
enum { RUN_HOOK = 1, RUN_LOAD = 2, RUN_CTL = 3 };

struct budget {
    /* shared with the watchdog thread */
    _Atomic uint64_t run;      /* the running run's number, 0 when none */
    _Atomic int64_t deadline;  /* CLOCK_MONOTONIC ns */
    _Atomic uint64_t expired;  /* the number of a run whose deadline passed */
    struct budget *next;       /* the watchdog's list (under wd.lock) */
    uint64_t wd_seen;          /* the last run number the watchdog saw */
    /* the state's own thread only */
    uint64_t runs;
    uint64_t cur;              /* == run, readable without an atomic */
    int kind;                  /* RUN_HOOK or RUN_LOAD */
    int poisoned;
    int msg_ref;               /* the budget error, once raised */
    uint64_t used, max_used;   /* instructions, and pattern/sort steps */
    double seconds;
};

struct lr_script {
    lua_State *L;
    struct lr_daemon *d;
    size_t mem, mem_limit;
    uint32_t hooks;
    int ref_call;            /* daemon.call_hook */
    int ref_ctl;             /* daemon.control_event */
    uint64_t failures;
    char *stack_base;        /* C stack where C last entered Lua */
    double hook_seconds;
    uint64_t hook_instructions;
    struct budget budget;
    lua_Alloc lj_alloc;      /* LuaJIT's own allocator, and its state */
    void *lj_ud;
};

/* A state's memory comes from LuaJIT's own allocator, an arena of the
 * state's own that lua_close unmaps whole: a generation's Lua objects
 * never share pages with the C heap, so reloads and hooks leave no
 * fragments behind in the threads' malloc arenas.  This wrapper keeps the
 * count the memory budget needs. */
static void *script_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct lr_script *s = ud;
    if (nsize == 0) {
        s->lj_alloc(s->lj_ud, ptr, osize, 0);
        if (ptr)
            s->mem -= osize;
        return NULL;
    }
    /* osize is the old block's size only when ptr is not NULL */
    size_t old = ptr ? osize : 0;
    if (nsize > old && s->mem - old + nsize > s->mem_limit)
        return NULL; /* Lua raises "not enough memory" */
    void *p = s->lj_alloc(s->lj_ud, ptr, osize, nsize);
    if (p)
        s->mem = s->mem - old + nsize;
    return p;
}

static struct lr_script *script_of(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/* ------------------------------------------------------------ watchdog */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct budget *head;
    _Atomic int idle;   /* asleep until a run wakes it */
    int started;
} wd = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0};

/* Under wd.lock: marks runs past their deadline -> whether any budget
 * started or is still in a run since the last look. */
static int wd_scan(int64_t now)
{
    int active = 0;
    for (struct budget *b = wd.head; b; b = b->next) {
        uint64_t run = atomic_load(&b->run);
        if (run != b->wd_seen) {
            b->wd_seen = run;
            active = 1;
        }
        if (!run)
            continue;
        active = 1;
        int64_t deadline = atomic_load(&b->deadline);
        /* the deadline read belongs to this run only if the run did not
         * change meanwhile (a run stores its deadline before its number) */
        if (now >= deadline && atomic_load(&b->run) == run)
            atomic_store(&b->expired, run);
    }
    return active;
}

static void *wd_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&wd.lock);
    int64_t last_active = mono_ns();
    for (;;) {
        int64_t now = mono_ns();
        if (wd_scan(now))
            last_active = now;
        if (now - last_active < WATCHDOG_LINGER_NS) {
            int64_t t = now + WATCHDOG_TICK_NS;
            struct timespec ts = {t / 1000000000ll, t % 1000000000ll};
            pthread_cond_timedwait(&wd.cond, &wd.lock, &ts);
            continue;
        }
        /* nothing ran for a while: sleep until a run starts.  A run
         * publishes its number and then reads idle; we publish idle and
         * then look at the runs once more, so one of the two sees the
         * other (both sequentially consistent). */
        atomic_store(&wd.idle, 1);
        if (wd_scan(mono_ns())) {
            atomic_store(&wd.idle, 0);
            last_active = mono_ns();
            continue;
        }
        while (atomic_load(&wd.idle))
            pthread_cond_wait(&wd.cond, &wd.lock);
        last_active = mono_ns();
    }
    return NULL;
}

static void wd_kick(void)
{
    if (atomic_load(&wd.idle)) {
        pthread_mutex_lock(&wd.lock);
        atomic_store(&wd.idle, 0);
        pthread_cond_signal(&wd.cond);
        pthread_mutex_unlock(&wd.lock);
    }
}

static int wd_register(struct budget *b)
{
    pthread_mutex_lock(&wd.lock);
    if (!wd.started) {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_destroy(&wd.cond);
        pthread_cond_init(&wd.cond, &ca);
        pthread_condattr_destroy(&ca);
        /* signals stay with the main thread */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        pthread_t t;
        int rc = pthread_create(&t, NULL, wd_main, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0) {
            pthread_mutex_unlock(&wd.lock);
            lr_error("cannot start the hook watchdog thread");
            return -1;
        }
        pthread_detach(t);
        wd.started = 1;
    }
    b->next = wd.head;
    wd.head = b;
    pthread_mutex_unlock(&wd.lock);
    return 0;
}

static void wd_unregister(struct budget *b)
{
    pthread_mutex_lock(&wd.lock);
    for (struct budget **p = &wd.head; *p; p = &(*p)->next)
        if (*p == b) {
            *p = b->next;
            break;
        }
    pthread_mutex_unlock(&wd.lock);
}

/* ------------------------------------------------------------ budget */

static void budget_hook(lua_State *L, lua_Debug *ar);

static int is_own_chunk(const char *source)
{
    return strncmp(source, "@lua/luaray/", 12) == 0;
}

/* "file:line: " of the innermost config code on the stack (luaray's own
 * modules are looked through: the DSL words, the pcall wrappers), from
 * `level` up; "" if there is none. */
static void config_where(lua_State *L, int level, char *out, size_t n)
{
    lua_Debug ar;
    out[0] = 0;
    for (int i = level; i < level + 200 && lua_getstack(L, i, &ar); i++) {
        if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0)
            continue;
        if (is_own_chunk(ar.source))
            continue;
        const char *src = ar.source;
        if (*src == '@' || *src == '=')
            src++;
        snprintf(out, n, "%s:%d: ", src, ar.currentline);
        return;
    }
}

static void budget_raise(lua_State *L, struct budget *b)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->msg_ref);
    lua_error(L);
}

/* The run is over its budget: remember the error, poison the run (the
 * count hook now fires at every instruction) and raise. */
static void budget_fail(lua_State *L, struct lr_script *s, int level, int by_time)
{
    struct budget *b = &s->budget;
    if (b->poisoned)
        budget_raise(L, b);
    char where[512], what[64];
    config_where(L, level, where, sizeof(where));
    if (by_time)
        snprintf(what, sizeof(what), "%g s", b->seconds);
    else
        snprintf(what, sizeof(what), "%llu instructions", (unsigned long long)b->max_used);
    /* the message must not fail for want of memory: at the cap, that
     * error would be raised in our place (and, from inside the count
     * hook, handed to an xpcall handler that no hook can stop) */
    s->mem_limit += BUDGET_MEM_SLACK;
    lua_pushfstring(L, "%sluaray: %s exceeded its budget (%s)", where,
                    b->kind == RUN_LOAD ? "config" : b->kind == RUN_CTL ? "control coroutine"
                                                                        : "hook", what);
    b->msg_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    s->mem_limit -= BUDGET_MEM_SLACK;
    b->poisoned = 1;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    budget_raise(L, b);
}

static int budget_expired(struct budget *b)
{
    return atomic_load_explicit(&b->expired, memory_order_relaxed) == b->cur;
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct lr_script *s = script_of(L);
    struct budget *b = &s->budget;
    if (!b->cur)
        return;
    if (b->poisoned)
        budget_raise(L, b);
    b->used += HOOK_EVERY;
    if (b->used > b->max_used)
        budget_fail(L, s, 0, 0);
    if (budget_expired(b))
        budget_fail(L, s, 0, 1);
}

/* Work done in C (pattern and sort steps) counts like instructions;
 * called every few thousand steps.  Nonzero when over budget (the caller
 * stops, then raises with budget_check). */
static int budget_over(struct lr_script *s, uint64_t steps)
{
    struct budget *b = &s->budget;
    if (!b->cur)
        return 0;
    b->used += steps;
    return b->poisoned || b->used > b->max_used || budget_expired(b);
}

/* From a C function called by Lua: raises the budget error if the run is
 * over budget (position: the calling config code). */
static void budget_check(lua_State *L, struct lr_script *s)
{
    struct budget *b = &s->budget;
    if (!b->cur)
        return;
    if (b->poisoned)
        budget_raise(L, b);
    if (b->used > b->max_used)
        budget_fail(L, s, 1, 0);
    if (budget_expired(b))
        budget_fail(L, s, 1, 1);
}

static void budget_begin(lua_State *L, struct lr_script *s, int kind)
{
    struct budget *b = &s->budget;
    if (b->cur)
        return; /* already in a run (not nested in practice) */
    b->kind = kind;
    b->used = 0;
    b->poisoned = 0;
    b->msg_ref = LUA_NOREF;
    b->seconds = kind == RUN_LOAD ? LOAD_SECONDS : s->hook_seconds;
    b->max_used = kind == RUN_LOAD ? UINT64_MAX : s->hook_instructions;
    b->cur = ++b->runs;
    atomic_store(&b->deadline, mono_ns() + (int64_t)(b->seconds * 1e9));
    atomic_store(&b->run, b->cur);
    wd_kick();
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
}

static void budget_end(lua_State *L, struct lr_script *s)
{
    struct budget *b = &s->budget;
    if (!b->cur)
        return;
    atomic_store(&b->run, 0);
    b->cur = 0;
    lua_sethook(L, NULL, 0, 0);
    if (b->msg_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, b->msg_ref);
    b->msg_ref = LUA_NOREF;
    b->poisoned = 0;
}

/* After lua_pcall: a run the Lua side did not end (an error unwound past
 * it).  The poisoned run's own message replaces whatever reached C. */
static const char *budget_after(lua_State *L, struct lr_script *s,
                                const char *msg, char *buf, size_t n)
{
    struct budget *b = &s->budget;
    if (b->cur && b->poisoned) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, b->msg_ref);
        snprintf(buf, n, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        msg = buf;
    }
    budget_end(L, s);
    return msg;
}

/* luaray.budget, for lua/luaray/daemon.lua only (config code cannot
 * require it). */
static int l_hook_begin(lua_State *L)
{
    budget_begin(L, script_of(L), RUN_HOOK);
    return 0;
}

static int l_ctl_begin(lua_State *L)
{
    budget_begin(L, script_of(L), RUN_CTL);
    return 0;
}

static int l_load_begin(lua_State *L)
{
    budget_begin(L, script_of(L), RUN_LOAD);
    return 0;
}

static int l_end(lua_State *L)
{
    struct lr_script *s = script_of(L);
    if (s->budget.poisoned)
        budget_raise(L, &s->budget); /* let it reach C */
    budget_end(L, s);
    return 0;
}

/* set(seconds, instructions): the hook budget of this state */
static int l_set(lua_State *L)
{
    struct lr_script *s = script_of(L);
    double sec = luaL_checknumber(L, 1);
    double ins = luaL_checknumber(L, 2);
    luaL_argcheck(L, sec > 0 && sec <= 3600, 1, "seconds out of range");
    luaL_argcheck(L, ins >= HOOK_EVERY && ins <= 1e15, 2, "instructions out of range");
    s->hook_seconds = sec;
    s->hook_instructions = (uint64_t)ins;
    return 0;
}

static int l_budget_module(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"hook_begin", l_hook_begin}, {"hook_end", l_end},
        {"load_begin", l_load_begin}, {"load_end", l_end},
        {"ctl_begin", l_ctl_begin}, {"ctl_end", l_end},
        {"set", l_set}, {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    lua_pushnumber(L, HOOK_SECONDS);
    lua_setfield(L, -2, "hook_seconds");
    lua_pushnumber(L, (lua_Number)HOOK_INSTRUCTIONS);
    lua_setfield(L, -2, "hook_instructions");
    lua_pushnumber(L, LOAD_SECONDS);
    lua_setfield(L, -2, "load_seconds");
    return 1;
}

/* ------------------------------------------- string and table functions */

static int pat_check(void *ud)
{
    return budget_over(ud, LR_PAT_CHECK_EVERY);
}

/* Raises the matcher's error, or the budget error, as LuaJIT would. */
static void pat_raise(lua_State *L, struct lr_script *s, struct lr_pat *m)
{
    if (m->err == LR_PAT_E_STOPPED) {
        budget_check(L, s);
        luaL_error(L, "pattern matching stopped"); /* not reached */
    }
    luaL_error(L, "%s", lr_pat_strerror(m->err));
}

static void push_capture(lua_State *L, struct lr_pat *m, int i,
                         const char *s, const char *e)
{
    if (i >= m->level) {
        if (i == 0) /* no captures: the whole match */
            lua_pushlstring(L, s, (size_t)(e - s));
        else
            luaL_error(L, "invalid capture index");
        return;
    }
    ptrdiff_t l = m->capture[i].len;
    if (l == LR_PAT_CAP_UNFINISHED)
        luaL_error(L, "unfinished capture");
    if (l == LR_PAT_CAP_POSITION)
        lua_pushinteger(L, m->capture[i].init - m->src_init + 1);
    else
        lua_pushlstring(L, m->capture[i].init, (size_t)l);
}

static int push_captures(lua_State *L, struct lr_pat *m, const char *s,
                         const char *e)
{
    int n = (m->level == 0 && s) ? 1 : m->level;
    luaL_checkstack(L, n, "too many captures");
    for (int i = 0; i < n; i++)
        push_capture(L, m, i, s, e);
    return n;
}

/* On entry to each of these: a poisoned run goes no further. */
static struct lr_script *lib_enter(lua_State *L)
{
    struct lr_script *s = script_of(L);
    if (s->budget.poisoned)
        budget_raise(L, &s->budget);
    return s;
}

static int find_aux(lua_State *L, int find)
{
    struct lr_script *s = lib_enter(L);
    size_t ls, lp;
    const char *src = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    lua_Integer start = luaL_optinteger(L, 3, 1);
    if (start < 0)
        start += (lua_Integer)ls;
    else
        start--;
    if (start < 0)
        start = 0;
    if ((size_t)start > ls)
        start = (lua_Integer)ls;
    size_t st = (size_t)start;
    if (find && (lua_toboolean(L, 4) || !lr_pat_special(p, lp))) {
        /* plain text: linear, bounded by the memory cap */
        const char *q = memmem(src + st, ls - st, p, lp);
        if (q) {
            lua_pushinteger(L, q - src + 1);
            lua_pushinteger(L, q - src + (lua_Integer)lp);
            return 2;
        }
        lua_pushnil(L);
        return 1;
    }
    struct lr_pat m;
    lr_pat_init(&m, src, ls, pat_check, s);
    const char *sp = src + st;
    int anchor = 0;
    if (*p == '^') {
        p++;
        anchor = 1;
    }
    do {
        const char *e = lr_pat_match(&m, sp, p);
        if (m.err)
            pat_raise(L, s, &m);
        if (e) {
            if (find) {
                lua_pushinteger(L, sp - src + 1);
                lua_pushinteger(L, e - src);
                return push_captures(L, &m, NULL, NULL) + 2;
            }
            return push_captures(L, &m, sp, e);
        }
    } while (sp++ < m.src_end && !anchor);
    lua_pushnil(L);
    return 1;
}

static int l_find(lua_State *L) { return find_aux(L, 1); }
static int l_match(lua_State *L) { return find_aux(L, 0); }

/* upvalues: subject, pattern, next start offset */
static int gmatch_next(lua_State *L)
{
    struct lr_script *s = lib_enter(L);
    size_t ls;
    const char *src = lua_tolstring(L, lua_upvalueindex(1), &ls);
    const char *p = lua_tostring(L, lua_upvalueindex(2));
    size_t pos = (size_t)lua_tointeger(L, lua_upvalueindex(3));
    struct lr_pat m;
    lr_pat_init(&m, src, ls, pat_check, s);
    for (const char *sp = src + pos; sp <= m.src_end; sp++) {
        const char *e = lr_pat_match(&m, sp, p);
        if (m.err)
            pat_raise(L, s, &m);
        if (e) {
            size_t next = (size_t)(e - src);
            if (e == sp)
                next++; /* an empty match: move on */
            lua_pushinteger(L, (lua_Integer)next);
            lua_replace(L, lua_upvalueindex(3));
            return push_captures(L, &m, sp, e);
        }
    }
    return 0;
}

static int l_gmatch(lua_State *L)
{
    lib_enter(L);
    luaL_checkstring(L, 1);
    luaL_checkstring(L, 2);
    lua_settop(L, 2);
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, gmatch_next, 3);
    return 1;
}

static void add_string(lua_State *L, struct lr_pat *m, luaL_Buffer *b,
                       const char *s, const char *e)
{
    size_t l;
    const char *r = lua_tolstring(L, 3, &l);
    for (size_t i = 0; i < l; i++) {
        if (r[i] != '%') {
            luaL_addchar(b, r[i]);
            continue;
        }
        i++; /* the character after '%' (the terminating NUL at the end) */
        if (r[i] < '0' || r[i] > '9') {
            luaL_addchar(b, r[i]);
        } else if (r[i] == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else {
            push_capture(L, m, r[i] - '1', s, e);
            luaL_addvalue(b);
        }
    }
}

static void add_value(lua_State *L, struct lr_pat *m, luaL_Buffer *b,
                      const char *s, const char *e)
{
    switch (lua_type(L, 3)) {
    case LUA_TNUMBER:
    case LUA_TSTRING:
        add_string(L, m, b, s, e);
        return;
    case LUA_TFUNCTION: {
        lua_pushvalue(L, 3);
        int n = push_captures(L, m, s, e);
        lua_call(L, n, 1);
        break;
    }
    case LUA_TTABLE:
        push_capture(L, m, 0, s, e);
        lua_gettable(L, 3);
        break;
    }
    if (!lua_toboolean(L, -1)) { /* nil or false: keep the original text */
        lua_pop(L, 1);
        lua_pushlstring(L, s, (size_t)(e - s));
    } else if (!lua_isstring(L, -1)) {
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    }
    luaL_addvalue(b);
}

static int l_gsub(lua_State *L)
{
    struct lr_script *s = lib_enter(L);
    /* gsub calls back into Lua with a large C frame (its buffer): a hook
     * recursing through it would overflow the C stack, which LuaJIT does
     * not limit */
    char *here = __builtin_frame_address(0);
    if (s->stack_base && here < s->stack_base &&
        (size_t)(s->stack_base - here) > CSTACK_LIMIT)
        luaL_error(L, "luaray: C stack overflow in string.gsub (recursion through C "
                      "deeper than %d KiB)", CSTACK_LIMIT >> 10);
    size_t ls;
    const char *src = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checkstring(L, 2);
    int tr = lua_type(L, 3);
    lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    int anchor = 0;
    if (*p == '^') {
        p++;
        anchor = 1;
    }
    if (!(tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION ||
          tr == LUA_TTABLE))
        luaL_argerror(L, 3, "string/function/table expected");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    struct lr_pat m;
    lr_pat_init(&m, src, ls, pat_check, s);
    lua_Integer n = 0;
    while (n < max_n) {
        const char *e = lr_pat_match(&m, src, p);
        if (m.err)
            pat_raise(L, s, &m);
        if (e) {
            n++;
            add_value(L, &m, &b, src, e);
            /* a replacement function may have spent the budget */
            budget_check(L, s);
        }
        if (e && e > src)
            src = e;
        else if (src < m.src_end)
            luaL_addchar(&b, *src++);
        else
            break;
        if (anchor)
            break;
    }
    luaL_addlstring(&b, src, (size_t)(m.src_end - src));
    luaL_pushresult(&b);
    lua_pushinteger(L, n);
    return 2;
}

/* table.sort as a heap sort: O(n log n) comparisons whatever the input,
 * counted against the budget (LuaJIT's sort of a few million elements
 * runs for seconds inside one C call).  Same contract: in place, not
 * stable, `comp` or the < operator (metamethods included). */
static int sort_less(lua_State *L, int has_comp, int a, int b)
{
    /* a and b are absolute stack indices of the two values */
    if (!has_comp)
        return lua_lessthan(L, a, b);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, a);
    lua_pushvalue(L, b);
    lua_call(L, 2, 1);
    int r = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return r;
}

struct sorter {
    lua_State *L;
    struct lr_script *s;
    int has_comp;
    unsigned steps;
};

static void sort_step(struct sorter *st)
{
    if (++st->steps % 1024 == 0 && budget_over(st->s, 1024))
        budget_check(st->L, st->s);
}

/* t[i] < t[j] ? */
static int sort_lt(struct sorter *st, lua_Integer i, lua_Integer j)
{
    lua_State *L = st->L;
    sort_step(st);
    lua_rawgeti(L, 1, (int)i);
    lua_rawgeti(L, 1, (int)j);
    int top = lua_gettop(L);
    int r = sort_less(L, st->has_comp, top - 1, top);
    lua_settop(L, top - 2);
    return r;
}

static void sort_swap(lua_State *L, lua_Integer i, lua_Integer j)
{
    lua_rawgeti(L, 1, (int)i);
    lua_rawgeti(L, 1, (int)j);
    lua_rawseti(L, 1, (int)i);
    lua_rawseti(L, 1, (int)j);
}

static void sift_down(struct sorter *st, lua_Integer root, lua_Integer n)
{
    for (;;) {
        lua_Integer child = 2 * root;
        if (child > n)
            return;
        if (child + 1 <= n && sort_lt(st, child, child + 1))
            child++;
        if (!sort_lt(st, root, child))
            return;
        sort_swap(st->L, root, child);
        root = child;
    }
}

static int l_sort(lua_State *L)
{
    struct lr_script *s = lib_enter(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_objlen(L, 1);
    int has_comp = !lua_isnoneornil(L, 2);
    if (has_comp)
        luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    luaL_checkstack(L, 8, "sort");
    struct sorter st = {L, s, has_comp, 0};
    for (lua_Integer i = n / 2; i >= 1; i--)
        sift_down(&st, i, n);
    for (lua_Integer end = n; end > 1; end--) {
        sort_swap(L, 1, end);
        sift_down(&st, 1, end - 1);
    }
    return 0;
}

/* Replaces the library functions above in the state's own tables, before
 * any module (or config) has copied one: luaray's Lua and config code see
 * only these. */
static void install_lib(lua_State *L)
{
    static const luaL_Reg str[] = {
        {"find", l_find}, {"match", l_match}, {"gmatch", l_gmatch},
        {"gsub", l_gsub}, {NULL, NULL}};
    lua_getglobal(L, "string");
    luaL_register(L, NULL, str);
    lua_pop(L, 1);
    lua_getglobal(L, "table");
    lua_pushcfunction(L, l_sort);
    lua_setfield(L, -2, "sort");
    lua_pop(L, 1);
}

/* ------------------------------------------------------------ states */

static int embedded_loader(lua_State *l)
{
    const struct lr_embedded *e = lua_touserdata(l, lua_upvalueindex(1));
    if (luaL_loadbuffer(l, e->src, e->len, e->chunk) != 0)
        return lua_error(l);
    lua_pushstring(l, e->name);
    lua_call(l, 1, 1);
    return 1;
}

/* An error outside any pcall (out of memory while C pushes a value):
 * say so before the process ends, instead of exiting silently. */
static int on_panic(lua_State *l)
{
    const char *m = lua_tostring(l, -1);
    lr_error("Lua panic: %s", m ? m : "unknown error");
    return 0;
}

static int on_error(lua_State *l)
{
    /* config errors are already "file:line: message"; keep them short */
    const char *msg = lua_tostring(l, 1);
    lua_pushstring(l, msg ? msg : "(error object is not a string)");
    return 1;
}

struct lr_script *lr_script_new(struct lr_daemon *d)
{
    struct lr_script *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->d = d;
    s->mem_limit = SCRIPT_MEM_LIMIT;
    s->ref_call = LUA_NOREF;
    s->ref_ctl = LUA_NOREF;
    s->hook_seconds = HOOK_SECONDS;
    s->hook_instructions = HOOK_INSTRUCTIONS;
    s->budget.msg_ref = LUA_NOREF;
    s->L = luaL_newstate();
    if (!s->L) {
        free(s);
        return NULL;
    }
    s->lj_alloc = lua_getallocf(s->L, &s->lj_ud);
    lua_setallocf(s->L, script_alloc, s);
    if (wd_register(&s->budget) != 0) {
        lua_setallocf(s->L, s->lj_alloc, s->lj_ud);
        lua_close(s->L);
        free(s);
        return NULL;
    }
    lua_State *L = s->L;
    lua_atpanic(L, on_panic);
    luaL_openlibs(L);
    install_lib(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    for (const struct lr_embedded *e = lr_embedded_lua; e->name; e++) {
        lua_pushlightuserdata(L, (void *)e);
        lua_pushcclosure(L, embedded_loader, 1);
        lua_setfield(L, -2, e->name);
    }
    lua_pushcfunction(L, l_budget_module);
    lua_setfield(L, -2, "luaray.budget");
    lua_pop(L, 2);
    return s;
}

void lr_script_free(struct lr_script *s)
{
    if (!s)
        return;
    wd_unregister(&s->budget);
    if (s->L) {
        /* LuaJIT's allocator back: lua_close then unmaps its arena */
        lua_setallocf(s->L, s->lj_alloc, s->lj_ud);
        lua_close(s->L);
    }
    free(s);
}

uint32_t lr_script_hooks(const struct lr_script *s)
{
    return s->hooks;
}

/* Calls require("luaray.daemon")[fn] with the nargs values on the stack;
 * the function returns (ok, err_or_value).  0 and the second result left
 * on the stack, or -1 with err filled. */
static int call_daemon(struct lr_script *s, const char *fn, int nargs,
                       char *err, size_t errlen)
{
    lua_State *L = s->L;
    int base = lua_gettop(L) - nargs;
    char buf[1024];
    s->stack_base = __builtin_frame_address(0);
    lua_pushcfunction(L, on_error);
    lua_getglobal(L, "require");
    lua_pushstring(L, "luaray.daemon");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_settop(L, base);
        return -1;
    }
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    /* args..., handler, function  ->  handler, function, args... */
    lua_insert(L, base + 1);
    lua_insert(L, base + 1);
    if (lua_pcall(L, nargs, 2, base + 1) != 0) {
        const char *m = budget_after(L, s, lua_tostring(L, -1), buf, sizeof(buf));
        snprintf(err, errlen, "%s", m ? m : "unknown error");
        lua_settop(L, base);
        return -1;
    }
    budget_end(L, s);
    if (!lua_toboolean(L, -2)) {
        const char *m = lua_tostring(L, -1);
        snprintf(err, errlen, "%s", m ? m : "unknown error");
        lua_settop(L, base);
        return -1;
    }
    /* keep the second result for the caller */
    lua_remove(L, -2);
    lua_remove(L, base + 1);
    return 0;
}

int lr_script_load_config(struct lr_script *s, const char *path,
                          struct lr_conf *conf, int announce, char *err,
                          size_t errlen)
{
    lua_State *L = s->L;
    int base = lua_gettop(L);
    if (path)
        lua_pushstring(L, path);
    else
        lua_pushnil(L);
    lua_pushlightuserdata(L, conf);
    lua_pushboolean(L, announce);
    if (call_daemon(s, "load", 3, err, errlen) != 0)
        return -1;
    /* the result is the bit mask of defined hooks */
    s->hooks = (uint32_t)lua_tointeger(L, -1);
    lua_settop(L, base);
    /* remember the hook entry point */
    lua_getglobal(L, "require");
    lua_pushstring(L, "luaray.daemon");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_settop(L, base);
        return -1;
    }
    lua_getfield(L, -1, "call_hook");
    s->ref_call = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "control_event");
    s->ref_ctl = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, base);
    return 0;
}

int lr_script_call(struct lr_script *s, struct lr_hook_ctx *ctx)
{
    lua_State *L = s->L;
    int base = lua_gettop(L);
    char buf[256];
    ctx->verdict = LR_VERDICT_CONTINUE;
    ctx->out_tag[0] = ctx->out_reason[0] = 0;
    s->stack_base = __builtin_frame_address(0);
    lua_pushcfunction(L, on_error);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_call);
    lua_pushlightuserdata(L, ctx);
    if (lua_pcall(L, 1, 0, base + 1) != 0) {
        const char *m = budget_after(L, s, lua_tostring(L, -1), buf, sizeof(buf));
        ctx->verdict = LR_VERDICT_ERROR;
        snprintf(ctx->out_reason, sizeof(ctx->out_reason), "%s",
                 m ? m : "hook failed");
    }
    budget_end(L, s);
    lua_settop(L, base);
    if (ctx->verdict == LR_VERDICT_ERROR)
        s->failures++;
    /* LuaJIT does not collect before failing an allocation: after a hook
     * that hit the cap (or came close), free its garbage now so the next
     * call starts clean */
    if (ctx->verdict == LR_VERDICT_ERROR || s->mem > s->mem_limit / 2)
        lua_gc(L, LUA_GCCOLLECT, 0);
    return ctx->verdict;
}

int lr_script_control(struct lr_script *s, struct lr_ctl_event *ev, char *err,
                      size_t errlen)
{
    lua_State *L = s->L;
    int base = lua_gettop(L);
    char buf[1024];
    int rc = 0;
    if (s->ref_ctl == LUA_NOREF) {
        snprintf(err, errlen, "no control entry point in this state");
        return -1;
    }
    s->stack_base = __builtin_frame_address(0);
    lua_pushcfunction(L, on_error);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_ctl);
    lua_pushlightuserdata(L, ev);
    if (lua_pcall(L, 1, 0, base + 1) != 0) {
        const char *m = budget_after(L, s, lua_tostring(L, -1), buf, sizeof(buf));
        snprintf(err, errlen, "%s", m ? m : "control event failed");
        rc = -1;
    }
    budget_end(L, s);
    lua_settop(L, base);
    /* as after a hook: garbage of a run at (or near) the cap goes now */
    if (rc != 0 || s->mem > s->mem_limit / 2)
        lua_gc(L, LUA_GCCOLLECT, 0);
    return rc;
}

void lr_script_reload_hook(struct lr_gen *g)
{
    if (!g->script || !(g->hooks & (1u << LR_HOOK_RELOAD)))
        return;
    struct lr_hook_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.kind = LR_HOOK_RELOAD;
    ctx.generation = g->id;
    if (lr_script_call(g->script, &ctx) == LR_VERDICT_ERROR)
        lr_warn("reload hook failed: %s", ctx.out_reason);
}

int lr_script_links(struct lr_script *s, const char *path, const char *host,
                    char *err, size_t errlen)
{
    lua_State *L = s->L;
    int base = lua_gettop(L);
    lua_pushstring(L, path);
    if (host)
        lua_pushstring(L, host);
    else
        lua_pushnil(L);
    int rc = call_daemon(s, "links", 2, err, errlen);
    lua_settop(L, base);
    return rc;
}

int lr_script_daemon_call(struct lr_script *s, const char *fn, const char *arg,
                          char *out, size_t outlen)
{
    lua_State *L = s->L;
    int base = lua_gettop(L);
    if (arg)
        lua_pushstring(L, arg);
    else
        lua_pushnil(L);
    int rc = call_daemon(s, fn, 1, out, outlen);
    if (rc == 0) {
        const char *r = lua_tostring(L, -1);
        snprintf(out, outlen, "%s", r ? r : "");
    }
    lua_settop(L, base);
    return rc;
}

const struct lr_scripts lr_bridge_scripts = {
    .create = lr_script_new,
    .destroy = lr_script_free,
    .load_config = lr_script_load_config,
    .hooks = lr_script_hooks,
    .call = lr_script_call,
    .reload_hook = lr_script_reload_hook,
    .control = lr_script_control,
};
