/*
 * xbind_win32.c -- the exclusive-bind core for Windows (Winsock 2).
 *
 * Windows lets a second socket bind a port that is already bound -- even
 * listening -- in several cases (Microsoft, "Using SO_REUSEADDR and
 * SO_EXCLUSIVEADDRUSE"): a specific address over a wildcard one by the same
 * user with no option at all, and the same address with SO_REUSEADDR.  The
 * only defence is SO_EXCLUSIVEADDRUSE, set before bind(); SO_REUSEADDR must
 * never be set on the server (it would also let other users in).
 */
#include "xbind.h"

#include <windows.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#ifndef WSA_FLAG_NO_HANDLE_INHERIT
#  define WSA_FLAG_NO_HANDLE_INHERIT 0x80
#endif

int xb_last_error(void)
{
    return WSAGetLastError();
}

/* Microsoft's texts for the Winsock errors a listener can meet ("Windows
 * Sockets Error Codes"); used only when FormatMessage has none. */
static const char *winsock_text(int code)
{
    switch (code) {
    case WSAEACCES:
        return "An attempt was made to access a socket in a way forbidden by its access permissions";
    case WSAEADDRINUSE:
        return "Only one usage of each socket address (protocol/network address/port) is normally permitted";
    case WSAEADDRNOTAVAIL:
        return "The requested address is not valid in its context";
    case WSAEAFNOSUPPORT:
        return "An address incompatible with the requested protocol was used";
    case WSAEINVAL:
        return "An invalid argument was supplied";
    case WSAEMFILE:
        return "Too many open sockets";
    case WSAENOBUFS:
        return "An operation on a socket could not be performed because the system lacked sufficient buffer space or because a queue was full";
    case WSAENOTSOCK:
        return "An operation was attempted on something that is not a socket";
    case WSAEPROTONOSUPPORT:
        return "The requested protocol has not been configured into the system, or no implementation for it exists";
    case WSAENETDOWN:
        return "A socket operation encountered a dead network";
    case WSANOTINITIALISED:
        return "Either the application has not called WSAStartup, or WSAStartup failed";
    case WSAEOPNOTSUPP:
        return "The attempted operation is not supported for the type of object referenced";
    case WSAECONNREFUSED:
        return "No connection could be made because the target machine actively refused it";
    default:
        return NULL;
    }
}

char *xb_strerror(int code, char *buf, size_t len)
{
    DWORD n;

    if (buf == NULL || len == 0)
        return buf;
    buf[0] = '\0';
    n = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL,
                       (DWORD)code, MAKELANGID(LANG_NEUTRAL, SUBLANG_DEFAULT), buf,
                       (DWORD)(len > 0xFFFF ? 0xFFFF : len), NULL);
    if (n == 0) {
        /* No system text (Wine has none for the WSA codes): use ours. */
        const char *text = winsock_text(code);
        if (text != NULL)
            (void)snprintf(buf, len, "%s", text);
        else
            (void)snprintf(buf, len, "Windows error %d", code);
        return buf;
    }
    /* FormatMessage ends with "\r\n": drop trailing white space and dot. */
    while (n > 0 && (buf[n - 1] == '\r' || buf[n - 1] == '\n' || buf[n - 1] == ' ' || buf[n - 1] == '.'))
        buf[--n] = '\0';
    return buf;
}

static volatile LONG started = 0;

int xb_startup(xb_error *err)
{
    WSADATA data;
    int rc;

    if (InterlockedCompareExchange(&started, 1, 0) != 0)
        return 0;
    rc = WSAStartup(MAKEWORD(2, 2), &data);
    if (rc != 0) {
        InterlockedExchange(&started, 0);
        return xb_fail(err, XB_STAGE_INIT, rc, "WSAStartup");
    }
    return 0;
}

static int set_int_option(SOCKET s, int level, int name, int value, const char *what, xb_error *err)
{
    if (setsockopt(s, level, name, (const char *)&value, (int)sizeof(value)) != 0)
        return xb_fail(err, XB_STAGE_OPTION, WSAGetLastError(), what);
    return 0;
}

/* A TCP socket that child processes never inherit. */
static int open_noinherit(int family, SOCKET *out, xb_error *err)
{
    SOCKET s;

    *out = INVALID_SOCKET;
    if (xb_startup(err) != 0)
        return -1;
    s = WSASocketW(family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                   WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (s == INVALID_SOCKET) {
        int e = WSAGetLastError();
        if (e != WSAEINVAL)
            return xb_fail(err, XB_STAGE_SOCKET, e, "WSASocketW");
        s = WSASocketW(family, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
        if (s == INVALID_SOCKET)
            return xb_fail(err, XB_STAGE_SOCKET, WSAGetLastError(), "WSASocketW");
        if (!SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0)) {
            int e2 = (int)GetLastError();
            closesocket(s);
            return xb_fail(err, XB_STAGE_OPTION, e2, "SetHandleInformation");
        }
    }
    *out = s;
    return 0;
}

int xb_socket_open(int family, xb_sock *out, xb_error *err)
{
    SOCKET s;
    u_long nonblocking = 1;

    if (out == NULL)
        return xb_fail(err, XB_STAGE_SOCKET, WSAEINVAL, "no output socket");
    *out = XB_BADSOCK;
    if (family != AF_INET && family != AF_INET6)
        return xb_fail(err, XB_STAGE_SOCKET, WSAEAFNOSUPPORT, "WSASocketW");

    /* Overlapped for the IOCP reactor; never inherited by child processes. */
    if (open_noinherit(family, &s, err) != 0)
        return -1;

    if (family == AF_INET6 &&
        set_int_option(s, IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY", err) != 0)
        goto fail_close;
    /* Must precede bind(); SO_REUSEADDR stays 0. */
    if (set_int_option(s, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1, "SO_EXCLUSIVEADDRUSE", err) != 0)
        goto fail_close;
    if (ioctlsocket(s, FIONBIO, &nonblocking) != 0) {
        xb_fail(err, XB_STAGE_OPTION, WSAGetLastError(), "FIONBIO");
        goto fail_close;
    }
    *out = s;
    return 0;

fail_close:
    {
        int e = WSAGetLastError();
        closesocket(s);
        WSASetLastError(e);
    }
    return -1;
}

int xb_socket_bind(xb_sock s, const xb_addr *addr, xb_error *err)
{
    if (addr == NULL)
        return xb_fail(err, XB_STAGE_BIND, WSAEINVAL, "bind");
    if (bind(s, (const struct sockaddr *)&addr->ss, addr->len) != 0)
        return xb_fail(err, XB_STAGE_BIND, WSAGetLastError(), "bind");
    return 0;
}

int xb_socket_listen(xb_sock s, int backlog, xb_error *err)
{
    if (backlog < 0)
        return xb_fail(err, XB_STAGE_LISTEN, WSAEINVAL, "listen");
    if (listen(s, backlog) != 0)
        return xb_fail(err, XB_STAGE_LISTEN, WSAGetLastError(), "listen");
    return 0;
}

int xb_socket_name(xb_sock s, xb_addr *out, xb_error *err)
{
    if (out == NULL)
        return xb_fail(err, XB_STAGE_NAME, WSAEINVAL, "getsockname");
    memset(out, 0, sizeof(*out));
    out->len = (xb_socklen)sizeof(out->ss);
    if (getsockname(s, (struct sockaddr *)&out->ss, &out->len) != 0)
        return xb_fail(err, XB_STAGE_NAME, WSAGetLastError(), "getsockname");
    return 0;
}

int xb_close(xb_sock s)
{
    if (s == XB_BADSOCK) {
        WSASetLastError(WSAENOTSOCK);
        return -1;
    }
    return closesocket(s) == 0 ? 0 : -1;
}

static int get_int_option(SOCKET s, int level, int name, int *value, const char *what, xb_error *err)
{
    int len = (int)sizeof(*value);
    *value = 0;
    if (getsockopt(s, level, name, (char *)value, &len) != 0)
        return xb_fail(err, XB_STAGE_OPTION, WSAGetLastError(), what);
    *value = *value != 0;
    return 0;
}

int xb_socket_options(xb_sock s, xb_sockopts *out, xb_error *err)
{
    xb_addr name;
    DWORD flags = 0;

    if (out == NULL)
        return xb_fail(err, XB_STAGE_OPTION, WSAEINVAL, "getsockopt");
    out->reuseport = -1;
    out->v6only = -1;
    out->nonblocking = -1; /* Winsock cannot report FIONBIO */
    if (get_int_option(s, SOL_SOCKET, SO_REUSEADDR, &out->reuseaddr, "SO_REUSEADDR", err) != 0)
        return -1;
    if (get_int_option(s, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, &out->exclusiveaddruse,
                       "SO_EXCLUSIVEADDRUSE", err) != 0)
        return -1;
    if (get_int_option(s, SOL_SOCKET, SO_ACCEPTCONN, &out->listening, "SO_ACCEPTCONN", err) != 0)
        return -1;
    if (xb_socket_name(s, &name, err) != 0) {
        /* An unbound socket has no name (WSAEINVAL): the family is still known. */
        int family;
        if (xb_socket_family(s, &family, err) != 0)
            return -1;
        /* mingw declares ss_family as short (Microsoft: ADDRESS_FAMILY); AF_* values fit. */
        name.ss.ss_family = (ADDRESS_FAMILY)family; // NOLINT(bugprone-narrowing-conversions)
    }
    if (name.ss.ss_family == AF_INET6 &&
        get_int_option(s, IPPROTO_IPV6, IPV6_V6ONLY, &out->v6only, "IPV6_V6ONLY", err) != 0)
        return -1;
    if (!GetHandleInformation((HANDLE)s, &flags))
        return xb_fail(err, XB_STAGE_OPTION, (int)GetLastError(), "GetHandleInformation");
    out->inheritable = (flags & HANDLE_FLAG_INHERIT) != 0;
    return 0;
}

int xb_socket_setopt(xb_sock s, int level, int name, int value, const char *what, xb_error *err)
{
    return set_int_option(s, level, name, value, what, err);
}


int xb_socket_raw(int family, xb_sock *out, xb_error *err)
{
    if (out == NULL)
        return xb_fail(err, XB_STAGE_SOCKET, WSAEINVAL, "no output socket");
    *out = XB_BADSOCK;
    if (family != AF_INET && family != AF_INET6)
        return xb_fail(err, XB_STAGE_SOCKET, WSAEAFNOSUPPORT, "WSASocketW");
    return open_noinherit(family, out, err);
}

int xb_guard_open(const xb_addr *addr, xb_sock *out, xb_error *err)
{
    SOCKET s;

    if (out == NULL || addr == NULL)
        return xb_fail(err, XB_STAGE_SOCKET, WSAEINVAL, "no address or output socket");
    *out = XB_BADSOCK;
    /* Windows lets a same-user socket bind over a plain bound socket
     * (specific over wildcard, or SO_REUSEADDR on the same address): only
     * SO_EXCLUSIVEADDRUSE, set before bind(), stops every later bind.  So a
     * guard is exactly the listener's socket, bound and never listening. */
    if (xb_socket_open(xb_addr_family(addr), &s, err) != 0)
        return -1;
    if (xb_socket_bind(s, addr, err) != 0) {
        int e = WSAGetLastError();
        closesocket(s);
        WSASetLastError(e);
        return -1;
    }
    *out = s;
    return 0;
}

int xb_socket_unlisten(xb_sock s, xb_error *err)
{
    /* Winsock has no way back from listen(): shutdown() of a listening socket
     * fails with WSAENOTCONN.  The caller keeps the socket listening. */
    (void)s;
    return xb_fail(err, XB_STAGE_LISTEN, WSAEOPNOTSUPP, "a listening socket cannot stop listening on Windows");
}

int xb_socket_family(xb_sock s, int *family, xb_error *err)
{
    WSAPROTOCOL_INFOW info;
    int len = (int)sizeof(info);

    if (getsockopt(s, SOL_SOCKET, SO_PROTOCOL_INFOW, (char *)&info, &len) != 0)
        return xb_fail(err, XB_STAGE_OPTION, WSAGetLastError(), "SO_PROTOCOL_INFOW");
    *family = info.iAddressFamily;
    return 0;
}
