/*
 * SOCKS5 UDP ASSOCIATE.  (Work in progress: answered "command not
 * supported" until the datagram relay lands.)
 */
#include "net/conn.h"

int lr_socks_udp_associate(struct lr_conn *c);

int lr_socks_udp_associate(struct lr_conn *c)
{
    uint8_t r[10] = {5, 7, 0, 1, 0, 0, 0, 0, 0, 0};
    if (lr_conn_send_client(c, r, sizeof(r)) == 0)
        lr_conn_close(c, "udp associate not supported yet");
    return 0;
}
