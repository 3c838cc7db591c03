/*
 * The PROXY protocol, versions 1 and 2 (HAProxy's doc/proxy-protocol.txt):
 * the header a proxy (HAProxy `send-proxy` / `send-proxy-v2`, nginx
 * `proxy_protocol on`, a cloud load balancer) puts before the client's
 * first byte to say whose connection it relays.  lr_pp_parse (api.h) is a
 * pure parser: bytes in, the header's length and addresses out; reading
 * the socket and deciding whom to believe is the inbound's front stage
 * (inbound/front_proxy.c).
 *
 * Version 1: one line of text, at most 107 bytes with its CRLF:
 *   "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"   (TCP6: IPv6 text)
 *   "PROXY UNKNOWN ...\r\n"                              (anything to the CRLF)
 * Fields are separated by exactly one space; addresses in their canonical
 * text (no leading zeros in IPv4), ports 0-65535 without leading zeros; a
 * lone CR or LF, a missing CRLF in the first 107 bytes, or anything else is
 * refused.
 *
 * Version 2: the 12-byte signature 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A,
 * version/command (0x20 LOCAL, 0x21 PROXY), family/transport, a 16-bit
 * length of what follows: the address block (12 bytes for IPv4, 36 for
 * IPv6, 216 for UNIX), then TLVs, which are skipped unread.  The addresses
 * are read for TCP over IPv4 (0x11) and IPv6 (0x21); LOCAL, AF_UNSPEC,
 * UNIX and datagram transports mean "the connection's own addresses"
 * (the spec's fall-back to UNSPEC); another version, command, family or
 * transport nibble, or a length shorter than the family's address block,
 * is refused.
 */
#ifndef LR_STREAM_PROXYPROTO_H
#define LR_STREAM_PROXYPROTO_H

#include "luaray/api.h"

#endif
