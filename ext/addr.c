/*
 * addr.c -- numeric address parsing and formatting, portable over xbind.h.
 *
 * Never resolves names: an interface given to a hardened listener must be an
 * IP literal, or which address (and which family) gets bound would depend on
 * the resolver.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#  define _POSIX_C_SOURCE 200809L /* getaddrinfo, inet_pton under -std=c11 */
#endif
#include "xbind.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#ifdef _WIN32
#  include <ws2tcpip.h>
#else
#  include <arpa/inet.h>
#  include <netdb.h>
#endif

int xb_addr_parse(const char *host, long port, int family, xb_addr *out, xb_error *err)
{
    if (out == NULL)
        return xb_fail(err, XB_STAGE_ADDRESS, EINVAL, "no output address");
    memset(out, 0, sizeof(*out));
    if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)
        return xb_fail(err, XB_STAGE_ADDRESS, EAFNOSUPPORT, "address family is neither IPv4 nor IPv6");
    if (port < 0 || port > 65535)
        return xb_fail(err, XB_STAGE_ADDRESS, EINVAL, "port out of range 0-65535");

    if (host == NULL || host[0] == '\0') {
        if (family == AF_INET6) {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
            sin6->sin6_family = AF_INET6;
            sin6->sin6_addr = in6addr_any;
            sin6->sin6_port = htons((unsigned short)port);
            out->len = (xb_socklen)sizeof(*sin6);
        } else {
            struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
            sin->sin_family = AF_INET;
            sin->sin_addr.s_addr = htonl(INADDR_ANY);
            sin->sin_port = htons((unsigned short)port);
            out->len = (xb_socklen)sizeof(*sin);
        }
        return 0;
    }

    if (strlen(host) >= XB_ADDRSTRLEN)
        return xb_fail(err, XB_STAGE_ADDRESS, EINVAL, "address text too long");

    /* Strict dotted quad for IPv4: inet_pton refuses "127.1" and "0x7f.0.0.1". */
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1) {
        if (family == AF_INET6)
            return xb_fail(err, XB_STAGE_ADDRESS, EAFNOSUPPORT, "an IPv4 address was given where IPv6 is required");
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
        sin->sin_family = AF_INET;
        sin->sin_addr = a4;
        sin->sin_port = htons((unsigned short)port);
        out->len = (xb_socklen)sizeof(*sin);
        return 0;
    }
    if (strchr(host, ':') == NULL)
        return xb_fail(err, XB_STAGE_ADDRESS, EINVAL, "not a numeric IP address");

    /* IPv6, possibly with a scope id: getaddrinfo does the %scope part. */
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET6;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST;
    int gai = getaddrinfo(host, NULL, &hints, &res);
    if (gai != 0 || res == NULL) {
        /* Only EAI_NONAME says the text is not an address; a resolver or
         * memory failure must not be reported as the caller's mistake. */
        if (gai == EAI_MEMORY)
            return xb_fail(err, XB_STAGE_ADDRESS, ENOMEM, "out of memory while parsing the IPv6 address");
#ifdef EAI_SYSTEM
        if (gai == EAI_SYSTEM)
            return xb_fail(err, XB_STAGE_ADDRESS, errno ? errno : EIO, "getaddrinfo failed while parsing the IPv6 address");
#endif
        if (gai != 0 && gai != EAI_NONAME)
            return xb_fail(err, XB_STAGE_ADDRESS, EAGAIN, "getaddrinfo failed while parsing the IPv6 address");
        return xb_fail(err, XB_STAGE_ADDRESS, EINVAL, "not a numeric IP address");
    }
    if (family == AF_INET) {
        freeaddrinfo(res);
        return xb_fail(err, XB_STAGE_ADDRESS, EAFNOSUPPORT, "an IPv6 address was given where IPv4 is required");
    }
    if (res->ai_family != AF_INET6 || res->ai_addrlen > sizeof(out->ss)) {
        freeaddrinfo(res);
        return xb_fail(err, XB_STAGE_ADDRESS, EINVAL, "not a numeric IP address");
    }
    memcpy(&out->ss, res->ai_addr, (size_t)res->ai_addrlen);
    out->len = (xb_socklen)res->ai_addrlen;
    freeaddrinfo(res);
    ((struct sockaddr_in6 *)&out->ss)->sin6_port = htons((unsigned short)port);
    return 0;
}

int xb_addr_family(const xb_addr *addr)
{
    return addr ? (int)addr->ss.ss_family : AF_UNSPEC;
}

int xb_addr_port(const xb_addr *addr)
{
    if (addr == NULL)
        return -1;
    if (addr->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&addr->ss)->sin_port);
    if (addr->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&addr->ss)->sin6_port);
    return -1;
}

int xb_addr_format(const xb_addr *addr, char *buf, size_t len)
{
    char host[XB_ADDRSTRLEN];
    int n;

    if (addr == NULL || buf == NULL || len == 0)
        return -1;
    buf[0] = '\0';
    if (addr->ss.ss_family != AF_INET && addr->ss.ss_family != AF_INET6)
        return -1;
    if (getnameinfo((const struct sockaddr *)&addr->ss, addr->len, host, sizeof(host),
                    NULL, 0, NI_NUMERICHOST) != 0)
        return -1;
    if (addr->ss.ss_family == AF_INET6)
        n = snprintf(buf, len, "[%s]:%d", host, xb_addr_port(addr));
    else
        n = snprintf(buf, len, "%s:%d", host, xb_addr_port(addr));
    if (n < 0 || (size_t)n >= len) {
        buf[0] = '\0';
        return -1;
    }
    return 0;
}

const char *xb_stage_name(xb_stage stage)
{
    switch (stage) {
    case XB_STAGE_NONE: return "none";
    case XB_STAGE_ADDRESS: return "address";
    case XB_STAGE_INIT: return "init";
    case XB_STAGE_SOCKET: return "socket";
    case XB_STAGE_OPTION: return "option";
    case XB_STAGE_BIND: return "bind";
    case XB_STAGE_LISTEN: return "listen";
    case XB_STAGE_NAME: return "getsockname";
    case XB_STAGE_OWNER: return "owner";
    case XB_STAGE_COUNT: break;
    }
    return "unknown";
}

int xb_listen(const xb_addr *addr, int backlog, xb_sock *out, xb_error *err)
{
    return xb_listen_ex(addr, backlog, 0, out, err);
}

int xb_listen_ex(const xb_addr *addr, int backlog, unsigned flags, xb_sock *out, xb_error *err)
{
    xb_sock s = XB_BADSOCK;

    if (out == NULL || addr == NULL)
        return xb_fail(err, XB_STAGE_ADDRESS, EINVAL, "no address");
    *out = XB_BADSOCK;
    if (xb_socket_open(xb_addr_family(addr), &s, err) != 0)
        return -1;
#ifndef _WIN32
    if ((flags & XB_LISTEN_STRICT_BIND) &&
        xb_socket_setopt(s, SOL_SOCKET, SO_REUSEADDR, 0, "SO_REUSEADDR", err) != 0) {
        xb_close(s);
        return -1;
    }
#endif
    if (xb_socket_bind(s, addr, err) != 0 || xb_socket_listen(s, backlog, err) != 0) {
        xb_close(s); /* the error of interest is the one already recorded */
        return -1;
    }
#ifndef _WIN32
    /* Listening, the socket conflicts with every later bind whatever its options;
     * SO_REUSEADDR now only lets its accepted connections' TIME_WAIT entries be
     * reused by the next start, as they would be with Twisted's own ports. */
    if ((flags & XB_LISTEN_STRICT_BIND) &&
        xb_socket_setopt(s, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR", err) != 0) {
        xb_close(s);
        return -1;
    }
#else
    (void)flags;
#endif
    *out = s;
    return 0;
}
