/*
 * Socket helpers.  Everything is non-blocking and close-on-exec.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "net/sock.h"

int lr_addr_parse(const char *host, uint16_t port, struct lr_addr *out)
{
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        out->len = sizeof(*s4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        out->len = sizeof(*s6);
        return 0;
    }
    return -EINVAL;
}

int lr_host_numeric(const char *host, struct lr_addr *out)
{
    char buf[256];
    size_t n = strlen(host);
    if (n == 0 || n >= sizeof(buf))
        return 0;
    memcpy(buf, host, n + 1);
    if (n > 1 && buf[n - 1] == '.')
        buf[--n] = 0; /* the root label of a fully qualified name */
    if (memchr(buf, ':', n)) /* no host name has a colon */
        return lr_addr_parse(buf, 0, out) == 0 ? 1 : -1;
    /* a name whose last label is a number (decimal, or 0x hex) is no DNS
     * name (RFC 3696 2: top-level labels are never all-numeric); it is an
     * address in one of the spellings inet_aton reads ("0177.0.0.1",
     * "2130706433", "0x7f.1"), which resolvers and other tools disagree
     * about.  Read it the way libc does, so every filter after this sees
     * the address that will be dialled, or refuse it. */
    const char *last = strrchr(buf, '.');
    last = last ? last + 1 : buf;
    int numeric;
    if (last[0] == '0' && (last[1] == 'x' || last[1] == 'X')) {
        numeric = 1;
        for (const char *q = last + 2; *q && numeric; q++)
            numeric = (*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f') ||
                      (*q >= 'A' && *q <= 'F');
    } else {
        numeric = *last != 0;
        for (const char *q = last; *q && numeric; q++)
            numeric = *q >= '0' && *q <= '9';
    }
    if (!numeric)
        return 0;
    /* inet_aton would accept trailing text after a space: allow only the
     * characters a numeric spelling has */
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdefABCDEFxX.", buf[i]))
            return -1;
    struct in_addr ia;
    if (inet_aton(buf, &ia) == 0)
        return -1;
    lr_addr_from_bytes((const uint8_t *)&ia, 4, 0, out);
    return 1;
}

void lr_addr_from_bytes(const uint8_t *ip, int len, uint16_t port,
                        struct lr_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (len == 4) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&out->ss;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, ip, 4);
        s4->sin_port = htons(port);
        out->len = sizeof(*s4);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->ss;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, ip, 16);
        s6->sin6_port = htons(port);
        out->len = sizeof(*s6);
    }
}

uint16_t lr_addr_port(const struct lr_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

void lr_addr_set_port(struct lr_addr *a, uint16_t port)
{
    if (a->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
}

void lr_addr_ip_str(const struct lr_addr *a, char *buf, size_t n)
{
    if (a->ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->ss)->sin_addr,
                  buf, (socklen_t)n);
    else if (a->ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
                  buf, (socklen_t)n);
    else
        snprintf(buf, n, "?");
}

void lr_addr_str(const struct lr_addr *a, char *buf, size_t n)
{
    char ip[INET6_ADDRSTRLEN];
    lr_addr_ip_str(a, ip, sizeof(ip));
    if (a->ss.ss_family == AF_INET6)
        snprintf(buf, n, "[%s]:%u", ip, lr_addr_port(a));
    else
        snprintf(buf, n, "%s:%u", ip, lr_addr_port(a));
}

int lr_addr_ip_bytes(const struct lr_addr *a, uint8_t *out)
{
    if (a->ss.ss_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)&a->ss)->sin_addr, 4);
        return 4;
    }
    const uint8_t *p = ((const struct sockaddr_in6 *)&a->ss)->sin6_addr.s6_addr;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(p, mapped, 12) == 0) {
        memcpy(out, p + 12, 4);
        return 4;
    }
    memcpy(out, p, 16);
    return 16;
}

int lr_addr_is_private(const struct lr_addr *a)
{
    uint8_t ip[16];
    int n = lr_addr_ip_bytes(a, ip);
    if (n == 4) {
        return ip[0] == 0 || ip[0] == 10 || ip[0] == 127 ||
               (ip[0] == 100 && (ip[1] & 0xc0) == 64) ||   /* 100.64/10 */
               (ip[0] == 169 && ip[1] == 254) ||
               (ip[0] == 172 && (ip[1] & 0xf0) == 16) ||
               (ip[0] == 192 && ip[1] == 168) ||
               (ip[0] == 192 && ip[1] == 0 && ip[2] == 0) || /* 192.0.0/24 */
               (ip[0] == 198 && (ip[1] & 0xfe) == 18) ||     /* 198.18/15 */
               ip[0] >= 224;                                 /* mcast, reserved */
    }
    static const uint8_t zero[16];
    if (memcmp(ip, zero, 15) == 0 && (ip[15] == 0 || ip[15] == 1))
        return 1;                                   /* :: and ::1 */
    return (ip[0] & 0xfe) == 0xfc ||                /* fc00::/7 */
           (ip[0] == 0xfe && (ip[1] & 0xc0) == 0x80) || /* fe80::/10 */
           ip[0] == 0xff ||                         /* multicast */
           (ip[0] == 0x00 && ip[1] == 0x64 && ip[2] == 0xff && ip[3] == 0x9b) || /* 64:ff9b::/96 NAT64 */
           (ip[0] == 0x20 && ip[1] == 0x01 && ip[2] == 0x0d && ip[3] == 0xb8);   /* doc */
}

int lr_sock_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

void lr_sock_tune(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int lr_sock_reuseport;

int lr_sock_listen(const struct lr_addr *a, int type, int backlog)
{
    int one = 1;
    int fd = socket(a->ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* a listener rebinds over TIME_WAIT; a datagram socket must not:
     * bound to port 0 with SO_REUSEADDR, it may be given a port another
     * such socket holds (two SOCKS5 UDP associations on one port, each
     * getting the other's datagrams) */
    if (type == SOCK_STREAM)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (type == SOCK_STREAM && lr_sock_reuseport &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 ||
        (type == SOCK_STREAM && listen(fd, backlog) < 0)) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int lr_sock_connect(const struct lr_addr *a)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    0);
    if (fd < 0)
        return -errno;
    lr_sock_tune(fd);
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 &&
        errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int lr_sock_connect_result(int fd)
{
    int err = 0;
    socklen_t l = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
        return -errno;
    return -err;
}
