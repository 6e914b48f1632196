/*
 * owner_win32.c -- who listens on a TCP port, on Windows.
 *
 * GetExtendedTcpTable(TCP_TABLE_OWNER_PID_LISTENER) for AF_INET and
 * AF_INET6 lists every listening TCP socket with the pid that owns it (ports
 * are in network byte order).  For each pid: the image name from
 * OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION) + QueryFullProcessImageNameW
 * and the user from the process token (OpenProcessToken, TokenUser,
 * LookupAccountSidW) as "DOMAIN\user".  Opening another user's process or
 * its token may be refused (elevated or service processes): the name or the
 * user is then "" and the pid alone is reported.  Windows has no uid: -1.
 *
 * Error codes are Win32 error codes (GetLastError() / the return value of
 * GetExtendedTcpTable); xb_strerror() formats them.
 */
#include "xbind.h"

#include <windows.h>
#include <iphlpapi.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

const char xb_owner_backend[] = "win32";

/* UTF-16 to UTF-8 into out (always NUL-terminated, truncated on a character boundary). */
static void to_utf8(const wchar_t *w, int wlen, char *out, size_t len)
{
    int n;

    out[0] = '\0';
    if (len < 2 || len > INT_MAX)
        return;
    while (wlen > 0) {
        n = WideCharToMultiByte(CP_UTF8, 0, w, wlen, out, (int)len - 1, NULL, NULL);
        if (n > 0) {
            out[n] = '\0';
            return;
        }
        if (GetLastError() != ERROR_INSUFFICIENT_BUFFER)
            return;
        wlen--; /* too long for the buffer: drop characters from the end */
        if (wlen > 0 && w[wlen - 1] >= 0xD800 && w[wlen - 1] <= 0xDBFF)
            wlen--; /* never split a surrogate pair */
    }
}

/* The table `cls` (TCP_TABLE_OWNER_PID_LISTENER or _CONNECTIONS) of one family,
 * allocated; *out NULL if the family is not installed.  `what`: the call, for errors. */
static int get_table(ULONG family, TCP_TABLE_CLASS cls, const char *what, void **out,
                     xb_error *err)
{
    DWORD size = 0, rc;
    void *buf = NULL;
    int tries;

    *out = NULL;
    for (tries = 0; tries < 16; tries++) {
        rc = GetExtendedTcpTable(buf, &size, FALSE, family, cls, 0);
        if (rc == NO_ERROR && buf != NULL) {
            *out = buf;
            return 0;
        }
        free(buf);
        buf = NULL;
        if (rc == ERROR_NOT_SUPPORTED && family == AF_INET6)
            return 0; /* no IPv6 stack: no IPv6 sockets */
        if (rc != ERROR_INSUFFICIENT_BUFFER && rc != NO_ERROR)
            return xb_fail(err, XB_STAGE_OWNER, (int)rc, what);
        if (size < sizeof(DWORD))
            size = sizeof(DWORD);
        size += 64 * (DWORD)sizeof(MIB_TCP6ROW_OWNER_PID); /* room for sockets opened meanwhile */
        buf = malloc(size);
        if (buf == NULL)
            return xb_fail(err, XB_STAGE_OWNER, ERROR_NOT_ENOUGH_MEMORY, "GetExtendedTcpTable buffer");
    }
    free(buf);
    return xb_fail(err, XB_STAGE_OWNER, ERROR_INSUFFICIENT_BUFFER, "GetExtendedTcpTable (table keeps growing)");
}

static int listener_table(ULONG family, void **out, xb_error *err)
{
    return get_table(family, TCP_TABLE_OWNER_PID_LISTENER, "GetExtendedTcpTable", out, err);
}

/* Image base name and user of a process; "" where Windows refuses to say.
 * Fails only when memory runs out. */
static int describe_process(DWORD pid, char *name, size_t namelen, char *user, size_t userlen,
                            xb_error *err)
{
    HANDLE proc, token = NULL;
    wchar_t image[MAX_PATH + 1];
    DWORD imagelen = MAX_PATH;
    DWORD toklen = 0;
    TOKEN_USER *tu = NULL;
    wchar_t account[256], domain[256], both[520];
    DWORD alen = 256, dlen = 256;
    SID_NAME_USE use;
    int rc = 0;

    name[0] = '\0';
    user[0] = '\0';
    if (pid == 0) {
        static const wchar_t idle[] = L"System Idle Process";
        to_utf8(idle, (int)wcslen(idle), name, namelen);
        return 0;
    }
    proc = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid);
    if (proc == NULL)
        return 0; /* access denied or gone: pid alone */
    if (QueryFullProcessImageNameW(proc, 0, image, &imagelen) && imagelen > 0) {
        const wchar_t *base = image, *p;
        image[imagelen] = L'\0';
        for (p = image; *p; p++)
            if (*p == L'\\' || *p == L'/')
                base = p + 1;
        to_utf8(base, (int)wcslen(base), name, namelen);
    }
    if (!OpenProcessToken(proc, TOKEN_QUERY, &token)) {
        token = NULL;
        goto done;
    }
    if (GetTokenInformation(token, TokenUser, NULL, 0, &toklen) ||
        GetLastError() != ERROR_INSUFFICIENT_BUFFER || toklen == 0)
        goto done;
    tu = (TOKEN_USER *)malloc(toklen);
    if (tu == NULL) {
        rc = xb_fail(err, XB_STAGE_OWNER, ERROR_NOT_ENOUGH_MEMORY, "GetTokenInformation buffer");
        goto done;
    }
    if (!GetTokenInformation(token, TokenUser, tu, toklen, &toklen))
        goto done;
    if (!LookupAccountSidW(NULL, tu->User.Sid, account, &alen, domain, &dlen, &use))
        goto done;
    account[255] = L'\0';
    domain[255] = L'\0';
    if (domain[0] != L'\0') {
        size_t d = wcslen(domain), a = wcslen(account);
        memcpy(both, domain, d * sizeof(wchar_t));
        both[d] = L'\\';
        memcpy(both + d + 1, account, a * sizeof(wchar_t));
        both[d + 1 + a] = L'\0';
        to_utf8(both, (int)(d + 1 + a), user, userlen);
    } else {
        to_utf8(account, (int)wcslen(account), user, userlen);
    }

done:
    free(tu);
    if (token != NULL)
        (void)CloseHandle(token);
    (void)CloseHandle(proc);
    return rc;
}

static int add_row(xb_listeners *out, int family, const void *addr, DWORD port_field, DWORD pid,
                   xb_error *err)
{
    xb_listener *item = xb_listeners_add(out);

    if (item == NULL)
        return xb_fail(err, XB_STAGE_OWNER, ERROR_NOT_ENOUGH_MEMORY, "listener list");
    item->family = family;
    item->port = ntohs((u_short)(port_field & 0xFFFF));
    if (inet_ntop(family, addr, item->host, sizeof(item->host)) == NULL) {
        out->count--;
        return xb_fail(err, XB_STAGE_OWNER, WSAGetLastError(), "inet_ntop");
    }
    /* item->v6only stays -1: the table does not report IPV6_V6ONLY */
    item->npids = 1;
    item->pids[0] = (long)pid;
    return 0;
}

int xb_owner_listeners(int port, unsigned flags, xb_listeners *out, xb_error *err)
{
    MIB_TCPTABLE_OWNER_PID *t4 = NULL;
    MIB_TCP6TABLE_OWNER_PID *t6 = NULL;
    void *raw = NULL;
    DWORD i;
    size_t k, j;
    int rc = -1;

    (void)flags; /* XB_OWNER_SELF_ONLY: nothing to skip here */
    if (out == NULL)
        return xb_fail(err, XB_STAGE_OWNER, ERROR_INVALID_PARAMETER, "no output list");
    xb_listeners_free(out);
    if (port < 1 || port > 65535)
        return xb_fail(err, XB_STAGE_OWNER, ERROR_INVALID_PARAMETER, "port out of range 1-65535");

    if (listener_table(AF_INET, &raw, err) != 0)
        goto out;
    t4 = (MIB_TCPTABLE_OWNER_PID *)raw;
    if (listener_table(AF_INET6, &raw, err) != 0)
        goto out;
    t6 = (MIB_TCP6TABLE_OWNER_PID *)raw;

    for (i = 0; t4 != NULL && i < t4->dwNumEntries; i++) {
        const MIB_TCPROW_OWNER_PID *r = &t4->table[i];
        if (r->dwState != MIB_TCP_STATE_LISTEN || ntohs((u_short)(r->dwLocalPort & 0xFFFF)) != port)
            continue;
        if (add_row(out, AF_INET, &r->dwLocalAddr, r->dwLocalPort, r->dwOwningPid, err) != 0)
            goto out;
    }
    for (i = 0; t6 != NULL && i < t6->dwNumEntries; i++) {
        const MIB_TCP6ROW_OWNER_PID *r = &t6->table[i];
        if (r->dwState != MIB_TCP_STATE_LISTEN || ntohs((u_short)(r->dwLocalPort & 0xFFFF)) != port)
            continue;
        if (add_row(out, AF_INET6, r->ucLocalAddr, r->dwLocalPort, r->dwOwningPid, err) != 0)
            goto out;
    }

    /* Names and users, once per pid. */
    for (k = 0; k < out->count; k++) {
        xb_listener *item = &out->items[k];
        for (j = 0; j < k; j++) {
            if (out->items[j].pids[0] == item->pids[0]) {
                memcpy(item->names[0], out->items[j].names[0], sizeof(item->names[0]));
                memcpy(item->user, out->items[j].user, sizeof(item->user));
                break;
            }
        }
        if (j == k && describe_process((DWORD)item->pids[0], item->names[0], sizeof(item->names[0]),
                                       item->user, sizeof(item->user), err) != 0)
            goto out;
    }
    rc = 0;

out:
    free(t4);
    free(t6);
    if (rc != 0)
        xb_listeners_free(out);
    return rc;
}

int xb_owner_process_user(long pid, long long *uid, char *user, size_t userlen, xb_error *err)
{
    char name[XB_OWNER_NAMELEN];
    HANDLE proc;

    if (uid == NULL || user == NULL || userlen == 0)
        return xb_fail(err, XB_STAGE_OWNER, ERROR_INVALID_PARAMETER, "xb_owner_process_user");
    *uid = -1;
    user[0] = '\0';
    if (pid < 0) /* long is 32 bits on Windows: every DWORD pid in use fits */
        return xb_fail(err, XB_STAGE_OWNER, ERROR_INVALID_PARAMETER, "no such process");
    /* Tell "no such process" from "not allowed to look". */
    proc = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, (DWORD)pid);
    if (proc == NULL)
        return xb_fail(err, XB_STAGE_OWNER, (int)GetLastError(), "OpenProcess");
    (void)CloseHandle(proc);
    return describe_process((DWORD)pid, name, sizeof(name), user, userlen, err);
}

/* --- the server end of a connection (xb_owner_connection) ------------------- *
 *
 * GetExtendedTcpTable(TCP_TABLE_OWNER_PID_CONNECTIONS): every TCP connection
 * with its owning pid; the server end is the row whose local address is the
 * client's peer and whose remote address is the client's own.  An IPv4
 * connection to a dual-mode (IPv6, V6ONLY off) server socket may be listed
 * in the IPv6 table with IPv4-mapped addresses: both tables are searched.
 */

static int conn_table(ULONG family, void **out, xb_error *err)
{
    return get_table(family, TCP_TABLE_OWNER_PID_CONNECTIONS,
                     "GetExtendedTcpTable(TCP_TABLE_OWNER_PID_CONNECTIONS)", out, err);
}

static int conn_state_of(DWORD s)
{
    switch (s) {
    case MIB_TCP_STATE_ESTAB:
        return XB_CONN_ESTABLISHED;
    case MIB_TCP_STATE_SYN_RCVD:
        return XB_CONN_SYN_RECEIVED;
    case MIB_TCP_STATE_FIN_WAIT1:
    case MIB_TCP_STATE_FIN_WAIT2:
    case MIB_TCP_STATE_CLOSE_WAIT:
    case MIB_TCP_STATE_CLOSING:
    case MIB_TCP_STATE_LAST_ACK:
    case MIB_TCP_STATE_TIME_WAIT:
    case MIB_TCP_STATE_CLOSED:
    case MIB_TCP_STATE_DELETE_TCB:
        return XB_CONN_CLOSING;
    default:
        return XB_CONN_NONE;
    }
}

static int conn_port_is(DWORD field, int port)
{
    return ntohs((u_short)(field & 0xFFFF)) == port;
}

static int conn_fill(xb_connection *out, int family, const void *addr, int port, DWORD state,
                     DWORD pid, xb_error *err)
{
    out->os_state = (int)state;
    out->state = conn_state_of(state);
    if (out->state == XB_CONN_NONE)
        return 0;
    out->server.family = family;
    out->server.port = port;
    if (inet_ntop(family, addr, out->server.host, sizeof(out->server.host)) == NULL)
        return xb_fail(err, XB_STAGE_OWNER, WSAGetLastError(), "inet_ntop");
    out->server.npids = 1;
    out->server.pids[0] = (long)pid;
    return describe_process(pid, out->server.names[0], sizeof(out->server.names[0]),
                            out->server.user, sizeof(out->server.user), err);
}

int xb_owner_connection(const xb_addr *client, const xb_addr *server, long pid, unsigned flags,
                        xb_connection *out, xb_error *err)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    unsigned char craw[16], sraw[16], cmap[16], smap[16];
    int cfamily, cport, sport, found = 0, rc = -1;
    unsigned long scope;
    MIB_TCPTABLE_OWNER_PID *t4 = NULL;
    MIB_TCP6TABLE_OWNER_PID *t6 = NULL;
    void *raw = NULL;
    DWORD i;

    (void)pid;   /* the owning pid comes with the row */
    (void)flags; /* XB_OWNER_NO_PROCESSES: nothing to skip */
    if (xb_connection_ends(client, server, out, &cfamily, craw, &cport, sraw, &sport, &scope,
                           err) != 0)
        return -1;
    (void)scope; /* the tables have no scope */

    if (cfamily == AF_INET) {
        if (conn_table(AF_INET, &raw, err) != 0)
            goto done;
        t4 = (MIB_TCPTABLE_OWNER_PID *)raw;
        for (i = 0; t4 != NULL && i < t4->dwNumEntries && !found; i++) {
            const MIB_TCPROW_OWNER_PID *r = &t4->table[i];
            if (!conn_port_is(r->dwLocalPort, sport) || !conn_port_is(r->dwRemotePort, cport) ||
                memcmp(&r->dwLocalAddr, sraw, 4) != 0 || memcmp(&r->dwRemoteAddr, craw, 4) != 0 ||
                r->dwState == MIB_TCP_STATE_LISTEN)
                continue;
            found = 1;
            if (conn_fill(out, AF_INET, &r->dwLocalAddr, sport, r->dwState, r->dwOwningPid,
                          err) != 0)
                goto done;
        }
        /* a dual-mode IPv6 server socket: the same 4-tuple, IPv4-mapped */
        memcpy(cmap, mapped, 12);
        memcpy(cmap + 12, craw, 4);
        memcpy(smap, mapped, 12);
        memcpy(smap + 12, sraw, 4);
    } else {
        memcpy(cmap, craw, 16);
        memcpy(smap, sraw, 16);
    }
    if (!found) {
        if (conn_table(AF_INET6, &raw, err) != 0)
            goto done;
        t6 = (MIB_TCP6TABLE_OWNER_PID *)raw;
        for (i = 0; t6 != NULL && i < t6->dwNumEntries && !found; i++) {
            const MIB_TCP6ROW_OWNER_PID *r = &t6->table[i];
            if (!conn_port_is(r->dwLocalPort, sport) || !conn_port_is(r->dwRemotePort, cport) ||
                memcmp(r->ucLocalAddr, smap, 16) != 0 || memcmp(r->ucRemoteAddr, cmap, 16) != 0 ||
                r->dwState == MIB_TCP_STATE_LISTEN)
                continue;
            found = 1;
            if (conn_fill(out, AF_INET6, r->ucLocalAddr, sport, r->dwState, r->dwOwningPid,
                          err) != 0)
                goto done;
        }
    }
    rc = 0;

done:
    free(t4);
    free(t6);
    if (rc != 0)
        xb_connection_init(out);
    return rc;
}

/* --- issue 13: bound placeholders, process start times ------------------ */

int xb_owner_bound(int port, unsigned flags, xb_listeners *out, xb_error *err)
{
    (void)port;
    (void)flags;
    xb_listeners_free(out);
    /* GetExtendedTcpTable lists no socket that is bound without listening or
     * connecting: such a placeholder cannot be seen on Windows. */
    return xb_fail(err, XB_STAGE_OWNER, (int)(ERROR_NOT_SUPPORTED), "bound, non-listening sockets cannot be listed on Windows");
}

int xb_owner_bound_visible(void)
{
    return 0;
}

int xb_process_start_time(long pid, double *out, xb_error *err)
{
    FILETIME created, exited, kernel, user;
    unsigned long long t;
    HANDLE proc;
    BOOL ok;

    if (out == NULL)
        return xb_fail(err, XB_STAGE_OWNER, (int)(ERROR_INVALID_PARAMETER), "xb_process_start_time");
    *out = 0.0;
    if (pid < 0)
        return xb_fail(err, XB_STAGE_OWNER, (int)(ERROR_INVALID_PARAMETER), "no such process");
    proc = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, (DWORD)pid);
    if (proc == NULL)
        return xb_fail(err, XB_STAGE_OWNER, (int)(GetLastError()), "OpenProcess");
    ok = GetProcessTimes(proc, &created, &exited, &kernel, &user);
    if (!ok) {
        DWORD e = GetLastError();
        (void)CloseHandle(proc);
        return xb_fail(err, XB_STAGE_OWNER, (int)(e), "GetProcessTimes");
    }
    if (!CloseHandle(proc))
        return xb_fail(err, XB_STAGE_OWNER, (int)(GetLastError()), "CloseHandle");
    /* 100 ns intervals since 1601-01-01 -> seconds since 1970-01-01 (as psutil) */
    t = ((unsigned long long)created.dwHighDateTime << 32) | created.dwLowDateTime;
    *out = ((double)t - 116444736000000000.0) / 1e7;
    return 0;
}

int xb_owner_timewait(int port, size_t *count, xb_error *err)
{
    (void)port;
    if (count)
        *count = 0;
    return xb_fail(err, XB_STAGE_OWNER, (int)(ERROR_NOT_SUPPORTED), "TIME_WAIT entries are not counted on Windows");
}
