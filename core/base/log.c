/*
 * The log sink.  Lines carry a UTC timestamp and a level; nothing here
 * ever prints key material (callers shorten UUIDs, see lr_uuid_short).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

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

FILE *lr_access_file(const char *path)
{
    FILE *f = fopen(path, "ae");
    if (f)
        setvbuf(f, NULL, _IOLBF, 0);
    return f;
}

int lr_access_check(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    if (errno != ENOENT)
        return -errno;
    /* not there yet: it can be made if its directory is writable */
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    return access(dir, W_OK | X_OK) == 0 ? 0 : -errno;
}

void lr_access_use(FILE *f)
{
    pthread_mutex_lock(&access_lock);
    FILE *old = access_f;
    access_f = f;
    access_on = f != NULL;
    pthread_mutex_unlock(&access_lock);
    if (old && old != stderr && old != f)
        fclose(old);
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
