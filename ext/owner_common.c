/*
 * owner_common.c -- the listener list shared by every owner_*.c.
 */
#include "xbind.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void xb_listeners_free(xb_listeners *list)
{
    if (list == NULL)
        return;
    free(list->items);
    list->items = NULL;
    list->count = 0;
    list->cap = 0;
}

xb_listener *xb_listeners_add(xb_listeners *list)
{
    xb_listener *item;

    if (list == NULL)
        return NULL;
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 8;
        xb_listener *items;
        if (cap < list->cap || cap > ((size_t)-1) / sizeof(xb_listener))
            return NULL;
        items = (xb_listener *)realloc(list->items, cap * sizeof(xb_listener));
        if (items == NULL)
            return NULL;
        list->items = items;
        list->cap = cap;
    }
    item = &list->items[list->count++];
    memset(item, 0, sizeof(*item));
    item->uid = -1;
    item->v6only = -1;
    return item;
}

/* --- verified connections: the parts every owner_*.c shares ------------------- */

/* A port in network byte order, read byte by byte (no ntohs: no socket header needed here). */
static int port_of(const void *field)
{
    const unsigned char *b = (const unsigned char *)field;
    return (int)b[0] << 8 | (int)b[1];
}

int xb_addr_split(const xb_addr *addr, int *family, unsigned char raw[16], int *port,
                  unsigned long *scope)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (addr == NULL || family == NULL || raw == NULL || port == NULL || scope == NULL)
        return -1;
    memset(raw, 0, 16);
    *scope = 0;
    if (addr->ss.ss_family == AF_INET && (size_t)addr->len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in a;
        memcpy(&a, &addr->ss, sizeof(a));
        *family = AF_INET;
        memcpy(raw, &a.sin_addr, 4);
        *port = port_of(&a.sin_port);
        return 0;
    }
    if (addr->ss.ss_family == AF_INET6 && (size_t)addr->len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a;
        memcpy(&a, &addr->ss, sizeof(a));
        if (memcmp(a.sin6_addr.s6_addr, mapped, sizeof(mapped)) == 0) {
            *family = AF_INET;
            memcpy(raw, a.sin6_addr.s6_addr + 12, 4);
        } else {
            *family = AF_INET6;
            memcpy(raw, a.sin6_addr.s6_addr, 16);
            *scope = (unsigned long)a.sin6_scope_id;
        }
        *port = port_of(&a.sin6_port);
        return 0;
    }
    return -1;
}

void xb_connection_init(xb_connection *out)
{
    memset(out, 0, sizeof(*out));
    out->state = XB_CONN_NONE;
    out->os_state = -1;
    out->server.uid = -1;
    out->server.v6only = -1;
}

#ifdef _WIN32
#  define XB_CONN_EINVAL ((int)ERROR_INVALID_PARAMETER)
#  define XB_CONN_EAFNOSUPPORT ((int)ERROR_INVALID_PARAMETER)
#else
#  define XB_CONN_EINVAL EINVAL
#  define XB_CONN_EAFNOSUPPORT EAFNOSUPPORT
#endif

int xb_connection_ends(const xb_addr *client, const xb_addr *server, xb_connection *out,
                       int *family, unsigned char craw[16], int *cport, unsigned char sraw[16],
                       int *sport, unsigned long *scope, xb_error *err)
{
    int sfamily;
    unsigned long cscope, sscope;

    if (out == NULL)
        return xb_fail(err, XB_STAGE_OWNER, XB_CONN_EINVAL, "no output");
    xb_connection_init(out);
    if (client == NULL || server == NULL ||
        xb_addr_split(client, family, craw, cport, &cscope) != 0 ||
        xb_addr_split(server, &sfamily, sraw, sport, &sscope) != 0)
        return xb_fail(err, XB_STAGE_OWNER, XB_CONN_EAFNOSUPPORT, "not an IPv4 or IPv6 address");
    if (*family != sfamily)
        return xb_fail(err, XB_STAGE_OWNER, XB_CONN_EINVAL,
                       "the two ends of a connection are of different families");
    if (*cport < 1 || *sport < 1)
        return xb_fail(err, XB_STAGE_OWNER, XB_CONN_EINVAL, "port 0: the socket is not connected");
    *scope = sscope ? sscope : cscope;
    return 0;
}
