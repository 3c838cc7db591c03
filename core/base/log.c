/*
 * The log sink.  Lines carry a UTC timestamp and a level; nothing here
 * ever prints key material (callers shorten UUIDs, see lr_uuid_short).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "base/base.h"
#include "base/log.h"

_Atomic int lr_log_level = LR_LOG_INFO;
/* The access log may be reopened (reload) while worker threads write to
 * it: the stream is swapped and written under one lock. */
static FILE *access_f;
static atomic_int access_on;
static pthread_mutex_t access_lock = PTHREAD_MUTEX_INITIALIZER;

static void stamp(char *buf, size_t n)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + k, n - k, ".%03dZ", (int)(tv.tv_usec / 1000));
}

void lr_log_write(int level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    char ts[40];
    va_list ap;
    stamp(ts, sizeof(ts));
    flockfile(stderr);
    fprintf(stderr, "%s [%s] ", ts, names[level & 3]);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    funlockfile(stderr);
}

int lr_access_open(const char *path)
{
    FILE *f = NULL;
    int rc = 0;
    if (path && !*path) {
        f = stderr;
    } else if (path) {
        f = fopen(path, "a");
        if (!f)
            rc = -errno;
        else
            setvbuf(f, NULL, _IOLBF, 0);
    }
    pthread_mutex_lock(&access_lock);
    FILE *old = access_f;
    access_f = f;
    access_on = f != NULL;
    pthread_mutex_unlock(&access_lock);
    if (old && old != stderr)
        fclose(old);
    return rc;
}

int lr_access_enabled(void)
{
    return access_on;
}

void lr_access_write(const char *fmt, ...)
{
    char ts[40];
    va_list ap;
    if (!access_on)
        return;
    stamp(ts, sizeof(ts));
    pthread_mutex_lock(&access_lock);
    if (access_f) {
        fprintf(access_f, "%s ", ts);
        va_start(ap, fmt);
        vfprintf(access_f, fmt, ap);
        va_end(ap);
        fputc('\n', access_f);
    }
    pthread_mutex_unlock(&access_lock);
}
