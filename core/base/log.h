/*
 * Logging: one sink (stderr or a file), a level checked before anything is
 * formatted, and the access log (one line per connection).
 */
#ifndef LR_LOG_H
#define LR_LOG_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

#include "luaray/api.h"

/* The threshold, an enum lr_log_level (LR_LOG_DEBUG..LR_LOG_ERROR, api.h).
 * Set by the main thread (config, reload), read by every worker. */
extern _Atomic int lr_log_level;

void lr_log_write(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define lr_log(level, ...)                                                    \
    do {                                                                      \
        if ((level) >= atomic_load_explicit(&lr_log_level,                  \
                                            memory_order_relaxed))            \
            lr_log_write((level), __VA_ARGS__);                               \
    } while (0)
#define lr_debug(...) lr_log(LR_LOG_DEBUG, __VA_ARGS__)
#define lr_info(...) lr_log(LR_LOG_INFO, __VA_ARGS__)
#define lr_warn(...) lr_log(LR_LOG_WARN, __VA_ARGS__)
#define lr_error(...) lr_log(LR_LOG_ERROR, __VA_ARGS__)

/* Access log.  lr_access_file opens a file for appending, line buffered
 * (NULL with errno set); lr_access_check says whether `path` could be
 * opened so, without creating it (0 or -errno: for a config check);
 * lr_access_use makes `f` the access log (stderr, a file from
 * lr_access_file, or NULL: off) and closes the previous file. */
FILE *lr_access_file(const char *path);
int lr_access_check(const char *path);
void lr_access_use(FILE *f);
int lr_access_enabled(void);
void lr_access_write(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
