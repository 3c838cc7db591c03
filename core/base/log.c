/*
 * The log sink.  Lines carry a UTC timestamp and a level; nothing here
 * ever prints key material (callers shorten UUIDs, see lr_uuid_short).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "base/base.h"
#include "base/log.h"

int lr_log_level = LR_LOG_INFO;
static FILE *access_f;
static int access_on;

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
    if (access_f && access_f != stderr)
        fclose(access_f);
    access_f = NULL;
    access_on = 0;
    if (!path)
        return 0;
    if (!*path) {
        access_f = stderr;
    } else {
        access_f = fopen(path, "a");
        if (!access_f)
            return -errno;
        setvbuf(access_f, NULL, _IOLBF, 0);
    }
    access_on = 1;
    return 0;
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
    flockfile(access_f);
    fprintf(access_f, "%s ", ts);
    va_start(ap, fmt);
    vfprintf(access_f, fmt, ap);
    va_end(ap);
    fputc('\n', access_f);
    funlockfile(access_f);
}
