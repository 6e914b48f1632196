/*
 * xbind_posix.c -- the exclusive-bind core for Linux, macOS, the BSDs and
 * other POSIX systems.
 *
 * POSIX rules (see docs/threat-model.rst): a listening socket cannot be
 * shared unless *both* sides set SO_REUSEPORT (and, on Linux, share a uid).
 * So the server sets SO_REUSEADDR, which only lets it restart past
 * TIME_WAIT, and never SO_REUSEPORT.
 */
#ifndef _GNU_SOURCE
#  define _GNU_SOURCE 1 /* SOCK_CLOEXEC, SOCK_NONBLOCK, accept4 on glibc */
#endif
#include "xbind.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <netinet/tcp.h>

int xb_last_error(void)
{
    return errno;
}

char *xb_strerror(int code, char *buf, size_t len)
{
    if (buf == NULL || len == 0)
        return buf;
    /* strerror() is not thread-safe and strerror_r() has two signatures;
     * copy under the GIL-free assumption that the table is constant. */
    const char *text = strerror(code);
    if (text == NULL)
        text = "unknown error";
    size_t n = strlen(text);
    if (n >= len)
        n = len - 1;
    memcpy(buf, text, n);
    buf[n] = '\0';
    return buf;
}

int xb_startup(xb_error *err)
{
    (void)err;
    return 0;
}

static int set_int_option(int fd, int level, int name, int value, const char *what, xb_error *err)
{
    if (setsockopt(fd, level, name, &value, (socklen_t)sizeof(value)) != 0)
        return xb_fail(err, XB_STAGE_OPTION, errno, what);
    return 0;
}

/* socket() made non-inheritable (and optionally non-blocking) from the start. */
static int open_cloexec(int family, int nonblocking, int *out, xb_error *err)
{
    int fd;

    *out = -1;
#if defined(SOCK_CLOEXEC) && defined(SOCK_NONBLOCK)
    fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), IPPROTO_TCP);
    if (fd < 0)
        return xb_fail(err, XB_STAGE_SOCKET, errno, "socket");
#else
    fd = socket(family, SOCK_STREAM, IPPROTO_TCP);
    if (fd < 0)
        return xb_fail(err, XB_STAGE_SOCKET, errno, "socket");
    {
        int fdflags = fcntl(fd, F_GETFD);
        if (fdflags < 0 || fcntl(fd, F_SETFD, fdflags | FD_CLOEXEC) < 0) {
            int e = errno;
            (void)close(fd);
            return xb_fail(err, XB_STAGE_OPTION, e, "FD_CLOEXEC");
        }
        if (nonblocking) {
            int flflags = fcntl(fd, F_GETFL);
            if (flflags < 0 || fcntl(fd, F_SETFL, flflags | O_NONBLOCK) < 0) {
                int e = errno;
                (void)close(fd);
                return xb_fail(err, XB_STAGE_OPTION, e, "O_NONBLOCK");
            }
        }
    }
#endif
    *out = fd;
    return 0;
}

int xb_socket_open(int family, xb_sock *out, xb_error *err)
{
    int fd;

    if (out == NULL)
        return xb_fail(err, XB_STAGE_SOCKET, EINVAL, "no output socket");
    *out = XB_BADSOCK;
    if (family != AF_INET && family != AF_INET6)
        return xb_fail(err, XB_STAGE_SOCKET, EAFNOSUPPORT, "socket");

    /* Atomic where the OS allows (SOCK_CLOEXEC|SOCK_NONBLOCK): no window in
     * which a fork+exec elsewhere inherits the fd.  macOS has neither flag:
     * both are set right after socket() there (Python's own sockets share
     * that limit). */
    if (open_cloexec(family, 1, &fd, err) != 0)
        return -1;

    if (family == AF_INET6 &&
        set_int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY", err) != 0)
        goto fail_close;
    if (set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR", err) != 0)
        goto fail_close;
    /* SO_REUSEPORT is never set: it is what lets a same-uid process share
     * the port and receive a share of its connections. */

    *out = fd;
    return 0;

fail_close:
    {
        int e = errno;
        (void)close(fd);
        errno = e;
    }
    return -1;
}

int xb_socket_bind(xb_sock s, const xb_addr *addr, xb_error *err)
{
    if (addr == NULL)
        return xb_fail(err, XB_STAGE_BIND, EINVAL, "bind");
    if (bind(s, (const struct sockaddr *)&addr->ss, addr->len) != 0)
        return xb_fail(err, XB_STAGE_BIND, errno, "bind");
    return 0;
}

int xb_socket_listen(xb_sock s, int backlog, xb_error *err)
{
    if (backlog < 0)
        return xb_fail(err, XB_STAGE_LISTEN, EINVAL, "listen");
    if (listen(s, backlog) != 0)
        return xb_fail(err, XB_STAGE_LISTEN, errno, "listen");
    return 0;
}

int xb_socket_name(xb_sock s, xb_addr *out, xb_error *err)
{
    if (out == NULL)
        return xb_fail(err, XB_STAGE_NAME, EINVAL, "getsockname");
    memset(out, 0, sizeof(*out));
    out->len = (xb_socklen)sizeof(out->ss);
    if (getsockname(s, (struct sockaddr *)&out->ss, &out->len) != 0)
        return xb_fail(err, XB_STAGE_NAME, errno, "getsockname");
    return 0;
}

int xb_close(xb_sock s)
{
    if (s == XB_BADSOCK) {
        errno = EBADF;
        return -1;
    }
    return close(s);
}

static int get_int_option(int fd, int level, int name, int *value, const char *what, xb_error *err)
{
    socklen_t len = (socklen_t)sizeof(*value);
    *value = 0;
    if (getsockopt(fd, level, name, value, &len) != 0)
        return xb_fail(err, XB_STAGE_OPTION, errno, what);
    *value = *value != 0;
    return 0;
}

int xb_socket_options(xb_sock s, xb_sockopts *out, xb_error *err)
{
    xb_addr name;

    if (out == NULL)
        return xb_fail(err, XB_STAGE_OPTION, EINVAL, "getsockopt");
    out->reuseport = -1;
    out->exclusiveaddruse = -1;
    out->v6only = -1;
    out->listening = -1;
    if (get_int_option(s, SOL_SOCKET, SO_REUSEADDR, &out->reuseaddr, "SO_REUSEADDR", err) != 0)
        return -1;
#ifdef SO_REUSEPORT
    if (get_int_option(s, SOL_SOCKET, SO_REUSEPORT, &out->reuseport, "SO_REUSEPORT", err) != 0)
        return -1;
#endif
#ifdef SO_ACCEPTCONN
    if (get_int_option(s, SOL_SOCKET, SO_ACCEPTCONN, &out->listening, "SO_ACCEPTCONN", err) != 0)
        return -1;
#endif
    if (xb_socket_name(s, &name, err) != 0)
        return -1;
    if (name.ss.ss_family == AF_INET6 &&
        get_int_option(s, IPPROTO_IPV6, IPV6_V6ONLY, &out->v6only, "IPV6_V6ONLY", err) != 0)
        return -1;
    int fdflags = fcntl(s, F_GETFD);
    if (fdflags < 0)
        return xb_fail(err, XB_STAGE_OPTION, errno, "F_GETFD");
    out->inheritable = (fdflags & FD_CLOEXEC) == 0;
    int flflags = fcntl(s, F_GETFL);
    if (flflags < 0)
        return xb_fail(err, XB_STAGE_OPTION, errno, "F_GETFL");
    out->nonblocking = (flflags & O_NONBLOCK) != 0;
    return 0;
}

int xb_socket_setopt(xb_sock s, int level, int name, int value, const char *what, xb_error *err)
{
    return set_int_option(s, level, name, value, what, err);
}

int xb_socket_raw(int family, xb_sock *out, xb_error *err)
{
    if (out == NULL)
        return xb_fail(err, XB_STAGE_SOCKET, EINVAL, "no output socket");
    *out = XB_BADSOCK;
    if (family != AF_INET && family != AF_INET6)
        return xb_fail(err, XB_STAGE_SOCKET, EAFNOSUPPORT, "socket");
    return open_cloexec(family, 0, out, err);
}

int xb_guard_open(const xb_addr *addr, xb_sock *out, xb_error *err)
{
    int fd, family;

    if (out == NULL || addr == NULL)
        return xb_fail(err, XB_STAGE_SOCKET, EINVAL, "no address or output socket");
    *out = XB_BADSOCK;
    family = xb_addr_family(addr);
    if (family != AF_INET && family != AF_INET6)
        return xb_fail(err, XB_STAGE_SOCKET, EAFNOSUPPORT, "socket");
    if (open_cloexec(family, 1, &fd, err) != 0)
        return -1;
    /* No SO_REUSEADDR, no SO_REUSEPORT: a bound socket without them
     * conflicts with every later overlapping bind, whatever its options. */
    if (family == AF_INET6 &&
        set_int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY", err) != 0)
        goto fail_close;
    if (xb_socket_bind(fd, addr, err) != 0)
        goto fail_close;
    *out = fd;
    return 0;

fail_close:
    {
        int e = errno;
        (void)close(fd);
        errno = e;
    }
    return -1;
}

int xb_socket_unlisten(xb_sock s, xb_error *err)
{
    int accepting = 1;
    socklen_t len = (socklen_t)sizeof(accepting);

    /* First: a bound socket with SO_REUSEADDR lets another SO_REUSEADDR socket
     * bind beside it (while it does not listen), whatever its uid. */
    if (set_int_option(s, SOL_SOCKET, SO_REUSEADDR, 0, "SO_REUSEADDR", err) != 0)
        return -1;
    if (shutdown(s, SHUT_RD) != 0)
        return xb_fail(err, XB_STAGE_LISTEN, errno, "shutdown(SHUT_RD) of a listening socket");
#ifdef SO_ACCEPTCONN
    if (getsockopt(s, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0)
        return xb_fail(err, XB_STAGE_OPTION, errno, "SO_ACCEPTCONN");
    if (accepting)
        return xb_fail(err, XB_STAGE_LISTEN, EOPNOTSUPP,
                    "shutdown(SHUT_RD) left the socket listening");
#else
    (void)accepting;
    (void)len;
    return xb_fail(err, XB_STAGE_LISTEN, EOPNOTSUPP, "no SO_ACCEPTCONN to check shutdown()");
#endif
    /* Linux keeps the port only if bind() named it (SOCK_BINDPORT_LOCK): a socket
     * bound to port 0 loses its port here, and getsockname() still shows it
     * (measured: tests/native/c/issue13_test.c).  The caller must know. */
    return 0;
}
