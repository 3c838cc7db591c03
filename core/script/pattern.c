/*
 * script/pattern.c: Lua 5.1 patterns with a step budget (see pattern.h).
 *
 * Every call of match() and every iteration of a loop over the subject
 * (expansions, %b, back-references) is a step; every LR_PAT_CHECK_EVERY
 * steps the caller's `check` decides whether to go on.  An error or a stop
 * sets m->err, and from then on every level returns NULL at once, so the
 * recursion unwinds without trying more alternatives.
 */
#include <string.h>

#include "script/pattern.h"

#define ESC '%'
#define MAX_DEPTH 200 /* LuaJIT's LJ_MAX_XLEVEL */

/* Character classes as LuaJIT has them: ASCII only, whatever the locale. */
static int is_lower(int c) { return c >= 'a' && c <= 'z'; }
static int is_upper(int c) { return c >= 'A' && c <= 'Z'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_alpha(int c) { return is_lower(c) || is_upper(c); }
static int is_alnum(int c) { return is_alpha(c) || is_digit(c); }
static int is_cntrl(int c) { return c < 32 || c == 127; }
static int is_space(int c) { return (c >= 9 && c <= 13) || c == ' '; }
static int is_graph(int c) { return c >= 33 && c <= 126; }
static int is_punct(int c) { return is_graph(c) && !is_alnum(c); }
static int is_xdigit(int c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int fail(struct lr_pat *m, int err)
{
    if (!m->err)
        m->err = err;
    return 0;
}

static int step(struct lr_pat *m)
{
    if (--m->countdown == 0) {
        m->countdown = LR_PAT_CHECK_EVERY;
        if (m->check && m->check(m->ud))
            return fail(m, LR_PAT_E_STOPPED);
    }
    return 1;
}

int lr_pat_steps(struct lr_pat *m, size_t n)
{
    while (n >= m->countdown) {
        n -= m->countdown;
        m->countdown = 1;
        if (!step(m))
            return -1;
    }
    m->countdown -= (uint32_t)n;
    return 0;
}

void lr_pat_init(struct lr_pat *m, const char *s, size_t len,
                 int (*check)(void *ud), void *ud)
{
    m->src_init = s;
    m->src_end = s + len;
    m->level = m->depth = 0;
    m->err = LR_PAT_OK;
    m->countdown = LR_PAT_CHECK_EVERY;
    m->check = check;
    m->ud = ud;
}

/* %a, %A, ... against character c; cl is the letter after '%'. */
static int match_class(int c, int cl)
{
    int r;
    switch (cl | 0x20) {
    case 'a': r = is_alpha(c); break;
    case 'c': r = is_cntrl(c); break;
    case 'd': r = is_digit(c); break;
    case 'g': r = is_graph(c); break;
    case 'l': r = is_lower(c); break;
    case 'p': r = is_punct(c); break;
    case 's': r = is_space(c); break;
    case 'u': r = is_upper(c); break;
    case 'w': r = is_alnum(c); break;
    case 'x': r = is_xdigit(c); break;
    case 'z':
        if (cl == 'z')
            return c == 0;
        if (cl == 'Z')
            return c != 0;
        return cl == c;
    default: return cl == c;
    }
    if (!is_alpha(cl))
        return cl == c; /* '!' | 0x20 == 'a' and the like */
    return is_lower(cl) ? r : !r;
}

/* The end of the single-character class at p (after a '%x' or '[...]'). */
static const char *class_end(struct lr_pat *m, const char *p)
{
    switch (*p++) {
    case ESC:
        if (*p == '\0') {
            fail(m, LR_PAT_E_ENDS_ESC);
            return NULL;
        }
        return p + 1;
    case '[':
        if (*p == '^')
            p++;
        do { /* look for the ']' */
            if (*p == '\0') {
                fail(m, LR_PAT_E_MISSING_BR);
                return NULL;
            }
            if (*(p++) == ESC && *p != '\0')
                p++; /* an escape such as "%]" */
        } while (*p != ']');
        return p + 1;
    default:
        return p;
    }
}

/* c against the set [p .. ec], where p is at '[' and ec at its ']'. */
static int match_set(int c, const char *p, const char *ec)
{
    int yes = 1;
    if (*(p + 1) == '^') {
        yes = 0;
        p++;
    }
    while (++p < ec) {
        if (*p == ESC) {
            p++;
            if (match_class(c, (unsigned char)*p))
                return yes;
        } else if (*(p + 1) == '-' && p + 2 < ec) {
            p += 2;
            if ((unsigned char)*(p - 2) <= c && c <= (unsigned char)*p)
                return yes;
        } else if ((unsigned char)*p == c) {
            return yes;
        }
    }
    return !yes;
}

static int single_match(int c, const char *p, const char *ep)
{
    switch (*p) {
    case '.': return 1;
    case ESC: return match_class(c, (unsigned char)*(p + 1));
    case '[': return match_set(c, p, ep - 1);
    default: return (unsigned char)*p == c;
    }
}

static const char *match(struct lr_pat *m, const char *s, const char *p);

static const char *match_balance(struct lr_pat *m, const char *s, const char *p)
{
    if (*p == 0 || *(p + 1) == 0) {
        fail(m, LR_PAT_E_BALANCE);
        return NULL;
    }
    if (s >= m->src_end || *s != *p)
        return NULL;
    int b = *p, e = *(p + 1), open = 1;
    while (++s < m->src_end) {
        if (!step(m))
            return NULL;
        if (*s == e) {
            if (--open == 0)
                return s + 1;
        } else if (*s == b) {
            open++;
        }
    }
    return NULL;
}

static const char *max_expand(struct lr_pat *m, const char *s, const char *p,
                              const char *ep)
{
    ptrdiff_t i = 0;
    while (s + i < m->src_end && single_match((unsigned char)s[i], p, ep)) {
        if (!step(m))
            return NULL;
        i++;
    }
    /* the longest expansion first, then one shorter at a time */
    while (i >= 0) {
        const char *res = match(m, s + i, ep + 1);
        if (res || m->err)
            return res;
        i--;
    }
    return NULL;
}

static const char *min_expand(struct lr_pat *m, const char *s, const char *p,
                              const char *ep)
{
    for (;;) {
        const char *res = match(m, s, ep + 1);
        if (res || m->err)
            return res;
        if (s < m->src_end && single_match((unsigned char)*s, p, ep))
            s++; /* one more repetition */
        else
            return NULL;
    }
}

static const char *start_capture(struct lr_pat *m, const char *s,
                                 const char *p, ptrdiff_t what)
{
    int level = m->level;
    if (level >= LR_PAT_MAXCAPTURES) {
        fail(m, LR_PAT_E_TOO_MANY);
        return NULL;
    }
    m->capture[level].init = s;
    m->capture[level].len = what;
    m->level = level + 1;
    const char *res = match(m, s, p);
    if (!res)
        m->level--; /* undo the capture */
    return res;
}

static const char *end_capture(struct lr_pat *m, const char *s, const char *p)
{
    int l = m->level - 1;
    while (l >= 0 && m->capture[l].len != LR_PAT_CAP_UNFINISHED)
        l--;
    if (l < 0) {
        fail(m, LR_PAT_E_CAP_CLOSE);
        return NULL;
    }
    m->capture[l].len = s - m->capture[l].init;
    const char *res = match(m, s, p);
    if (!res)
        m->capture[l].len = LR_PAT_CAP_UNFINISHED;
    return res;
}

static const char *match_capture(struct lr_pat *m, const char *s, int l)
{
    l -= '1';
    if (l < 0 || l >= m->level || m->capture[l].len == LR_PAT_CAP_UNFINISHED) {
        fail(m, LR_PAT_E_CAP_INDEX);
        return NULL;
    }
    /* a position capture has len -2: as LuaJIT, compared as a huge size */
    size_t len = (size_t)m->capture[l].len;
    if ((size_t)(m->src_end - s) < len)
        return NULL;
    if (lr_pat_steps(m, len / 16) != 0)
        return NULL;
    if (memcmp(m->capture[l].init, s, len) == 0)
        return s + len;
    return NULL;
}

static const char *match(struct lr_pat *m, const char *s, const char *p)
{
    if (m->err || !step(m))
        return NULL;
    if (++m->depth > MAX_DEPTH) {
        fail(m, LR_PAT_E_COMPLEX);
        return NULL;
    }
again:
    switch (*p) {
    case '(':
        if (*(p + 1) == ')')
            s = start_capture(m, s, p + 2, LR_PAT_CAP_POSITION);
        else
            s = start_capture(m, s, p + 1, LR_PAT_CAP_UNFINISHED);
        break;
    case ')':
        s = end_capture(m, s, p + 1);
        break;
    case ESC:
        switch (*(p + 1)) {
        case 'b':
            s = match_balance(m, s, p + 2);
            if (!s)
                break;
            p += 4;
            goto again;
        case 'f': {
            p += 2;
            if (*p != '[') {
                fail(m, LR_PAT_E_FRONTIER);
                s = NULL;
                break;
            }
            const char *ep = class_end(m, p);
            if (!ep) {
                s = NULL;
                break;
            }
            int prev = (s == m->src_init) ? '\0' : (unsigned char)*(s - 1);
            /* at the end of the subject the next "character" is its NUL */
            int cur = s < m->src_end ? (unsigned char)*s : '\0';
            if (match_set(prev, p, ep - 1) || !match_set(cur, p, ep - 1)) {
                s = NULL;
                break;
            }
            p = ep;
            goto again;
        }
        default:
            if (is_digit((unsigned char)*(p + 1))) { /* a back-reference %1-%9 */
                s = match_capture(m, s, (unsigned char)*(p + 1));
                if (!s)
                    break;
                p += 2;
                goto again;
            }
            goto item;
        }
        break;
    case '\0': /* end of the pattern: matched */
        break;
    case '$':
        if (*(p + 1) != '\0')
            goto item; /* a '$' that is not last is a plain character */
        if (s != m->src_end)
            s = NULL;
        break;
    default:
    item: {
        const char *ep = class_end(m, p);
        if (!ep) {
            s = NULL;
            break;
        }
        int hit = s < m->src_end && single_match((unsigned char)*s, p, ep);
        switch (*ep) {
        case '?': {
            const char *res;
            if (hit && (res = match(m, s + 1, ep + 1)) != NULL) {
                s = res;
                break;
            }
            if (m->err) {
                s = NULL;
                break;
            }
            p = ep + 1;
            goto again;
        }
        case '*':
            s = max_expand(m, s, p, ep);
            break;
        case '+':
            s = hit ? max_expand(m, s + 1, p, ep) : NULL;
            break;
        case '-':
            s = min_expand(m, s, p, ep);
            break;
        default:
            if (hit) {
                s++;
                p = ep;
                if (!step(m)) {
                    s = NULL;
                    break;
                }
                goto again;
            }
            s = NULL;
            break;
        }
        break;
    }
    }
    m->depth--;
    return m->err ? NULL : s;
}

const char *lr_pat_match(struct lr_pat *m, const char *s, const char *p)
{
    m->level = 0;
    m->depth = 0;
    return match(m, s, p);
}

const char *lr_pat_strerror(int err)
{
    switch (err) {
    case LR_PAT_E_ENDS_ESC: return "malformed pattern (ends with '%')";
    case LR_PAT_E_MISSING_BR: return "malformed pattern (missing ']')";
    case LR_PAT_E_CAP_INDEX: return "invalid capture index";
    case LR_PAT_E_CAP_CLOSE: return "invalid pattern capture";
    case LR_PAT_E_BALANCE: return "unbalanced pattern";
    case LR_PAT_E_FRONTIER: return "missing '[' after '%f' in pattern";
    case LR_PAT_E_TOO_MANY: return "too many captures";
    case LR_PAT_E_COMPLEX: return "pattern too complex";
    case LR_PAT_E_STOPPED: return "stopped";
    default: return "no error";
    }
}

int lr_pat_special(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] && strchr("^$*+?.([%-", p[i]))
            return 1;
    return 0;
}
