/*
 * Socket helpers: numeric addresses, non-blocking listen/connect, address
 * classification (the private-destination rule) and printing.
 */
#ifndef LR_SOCK_H
#define LR_SOCK_H

#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

struct lr_addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* Numeric IPv4/IPv6 (no brackets) and port; -EINVAL if not numeric. */
int lr_addr_parse(const char *host, uint16_t port, struct lr_addr *out);
/* A destination host as a client sent it: 1 if it is an address in any
 * spelling libc reads (dotted quad, IPv6, and inet_aton's octal, hex and
 * short forms: "0177.0.0.1" is 127.0.0.1), with `out` set; 0 if it is a
 * name; -1 if it looks numeric but is no address. */
int lr_host_numeric(const char *host, struct lr_addr *out);
/* From raw 4 or 16 address bytes. */
void lr_addr_from_bytes(const uint8_t *ip, int len, uint16_t port,
                        struct lr_addr *out);
uint16_t lr_addr_port(const struct lr_addr *a);
void lr_addr_set_port(struct lr_addr *a, uint16_t port);
/* "1.2.3.4:80" or "[::1]:80" */
void lr_addr_str(const struct lr_addr *a, char *buf, size_t n);
/* Only the IP, no port. */
void lr_addr_ip_str(const struct lr_addr *a, char *buf, size_t n);
/* The raw IP bytes (4 or 16, IPv4-mapped IPv6 unmapped to 4); returns len. */
int lr_addr_ip_bytes(const struct lr_addr *a, uint8_t *out);
/* Loopback, private, link-local, unspecified, CGNAT, ULA, multicast... */
int lr_addr_is_private(const struct lr_addr *a);

int lr_sock_nonblock(int fd);
/* Returns the listening fd or -errno. */
/* Stream listeners opened from now on set SO_REUSEPORT (several workers
 * listen on one address; the kernel spreads the connections). */
extern int lr_sock_reuseport;
int lr_sock_listen(const struct lr_addr *a, int type, int backlog);
/* Starts a non-blocking TCP connect; returns the fd (connect may still be
 * in progress) or -errno. */
int lr_sock_connect(const struct lr_addr *a);
/* 0 when a pending connect succeeded, else -errno. */
int lr_sock_connect_result(int fd);
void lr_sock_tune(int fd);

#endif
