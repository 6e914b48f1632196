/*
 * owner_none.c -- owner lookup on an OS without an implementation.
 *
 * The exclusive-bind core works on every POSIX system; telling who holds a
 * port needs an OS-specific interface, written so far for Linux
 * (owner_linux.c), Windows (owner_win32.c) and macOS (owner_darwin.c).
 * Everywhere else both functions fail with ENOSYS and a sentence saying so.
 */
#include "xbind.h"

#include <errno.h>

const char xb_owner_backend[] = "none";

static const char unsupported[] = "owner lookup is not supported on this OS";

int xb_owner_listeners(int port, unsigned flags, xb_listeners *out, xb_error *err)
{
    (void)port;
    (void)flags;
    xb_listeners_free(out);
    return xb_fail(err, XB_STAGE_OWNER, ENOSYS, unsupported);
}

int xb_owner_process_user(long pid, long long *uid, char *user, size_t userlen, xb_error *err)
{
    (void)pid;
    if (uid)
        *uid = -1;
    if (user && userlen)
        user[0] = '\0';
    return xb_fail(err, XB_STAGE_OWNER, ENOSYS, unsupported);
}

int xb_owner_connection(const xb_addr *client, const xb_addr *server, long pid, unsigned flags,
                        xb_connection *out, xb_error *err)
{
    (void)client;
    (void)server;
    (void)pid;
    (void)flags;
    if (out)
        xb_connection_init(out);
    return xb_fail(err, XB_STAGE_OWNER, ENOSYS, unsupported);
}

int xb_owner_bound(int port, unsigned flags, xb_listeners *out, xb_error *err)
{
    (void)port;
    (void)flags;
    xb_listeners_free(out);
    return xb_fail(err, XB_STAGE_OWNER, ENOSYS, unsupported);
}

int xb_owner_bound_visible(void)
{
    return 0;
}

int xb_process_start_time(long pid, double *out, xb_error *err)
{
    (void)pid;
    if (out)
        *out = 0.0;
    return xb_fail(err, XB_STAGE_OWNER, ENOSYS, unsupported);
}

int xb_owner_timewait(int port, size_t *count, xb_error *err)
{
    (void)port;
    if (count)
        *count = 0;
    return xb_fail(err, XB_STAGE_OWNER, ENOSYS, unsupported);
}
