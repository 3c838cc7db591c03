/*
 * script/pattern.h: Lua 5.1 pattern matching (the dialect LuaJIT 2.1
 * speaks) with a step budget.  LuaJIT's own matcher cannot be interrupted:
 * a backtracking pattern such as "^(.-)%.(.-)%.(.-)%.(.-)%.x$" on a
 * 500-byte subject runs for seconds inside one C call, where no debug hook
 * fires.  This one counts its steps and asks `check` every
 * LR_PAT_CHECK_EVERY steps whether to go on, so the hook budget
 * (bridge.c) also covers time spent matching.
 *
 * No Lua types here (script/bridge.c is the only file that includes
 * lua.h): bridge.c turns the results and errors into Lua values.
 * Semantics follow LuaJIT's lib_string.c exactly, quirks included: the
 * pattern ends at its first NUL byte, "%z" is NUL, a failed match is
 * retried at each later start position by the caller, recursion depth is
 * limited to 200 ("pattern too complex").
 */
#ifndef LR_PATTERN_H
#define LR_PATTERN_H

#include <stddef.h>
#include <stdint.h>

#define LR_PAT_MAXCAPTURES 32
#define LR_PAT_CAP_UNFINISHED (-1)
#define LR_PAT_CAP_POSITION (-2)
#define LR_PAT_CHECK_EVERY 4096

enum lr_pat_err {
    LR_PAT_OK = 0,
    LR_PAT_E_ENDS_ESC,    /* malformed pattern (ends with '%') */
    LR_PAT_E_MISSING_BR,  /* malformed pattern (missing ']') */
    LR_PAT_E_CAP_INDEX,   /* invalid capture index */
    LR_PAT_E_CAP_CLOSE,   /* invalid pattern capture */
    LR_PAT_E_BALANCE,     /* unbalanced pattern (%b without two chars) */
    LR_PAT_E_FRONTIER,    /* missing '[' after '%f' in pattern */
    LR_PAT_E_TOO_MANY,    /* too many captures */
    LR_PAT_E_COMPLEX,     /* pattern too complex */
    LR_PAT_E_STOPPED,     /* `check` said stop (the budget is spent) */
};

struct lr_pat_cap {
    const char *init;
    ptrdiff_t len; /* >= 0, or LR_PAT_CAP_UNFINISHED / LR_PAT_CAP_POSITION */
};

struct lr_pat {
    const char *src_init, *src_end;
    int level; /* captures opened so far */
    int depth;
    int err;   /* enum lr_pat_err; once set every match fails */
    uint32_t countdown;
    /* called every LR_PAT_CHECK_EVERY steps; nonzero stops the match */
    int (*check)(void *ud);
    void *ud;
    struct lr_pat_cap capture[LR_PAT_MAXCAPTURES];
};

/* Prepares m for subject [s, s + len). */
void lr_pat_init(struct lr_pat *m, const char *s, size_t len,
                 int (*check)(void *ud), void *ud);
/* Matches pattern p (NUL-terminated, without a leading '^' anchor) at s:
 * the end of the match, or NULL (no match, or m->err set). */
const char *lr_pat_match(struct lr_pat *m, const char *s, const char *p);
/* Counts n steps of work done by the caller (scanning); 0, or -1 when
 * `check` said stop (m->err is then LR_PAT_E_STOPPED). */
int lr_pat_steps(struct lr_pat *m, size_t n);
/* The text of an error. */
const char *lr_pat_strerror(int err);
/* True when p[0, len) has a character that makes it a pattern (else
 * string.find searches it as plain text, as LuaJIT does). */
int lr_pat_special(const char *p, size_t len);

#endif
