/*
 * owner_darwin.c -- who listens on a TCP port, on macOS.
 *
 * UNVERIFIED: written against the public <libproc.h> / <sys/proc_info.h>
 * interfaces (the ones lsof and psutil use) but not compiled or run by the
 * authors yet; the Linux and Windows implementations are the tested ones.
 *
 * macOS has no socket table a process can query by port: walk the processes
 * (proc_listpids), their descriptors (proc_pidinfo PROC_PIDLISTFDS) and, for
 * each socket, its state (proc_pidfdinfo PROC_PIDFDSOCKETINFO).  A TCP socket
 * in TSI_S_LISTEN on the port is a listener; the same kernel socket (soi_so)
 * seen in several processes is one listener with several pids.  The uid is
 * the socket's owner (soi_stat.vst_uid), the name proc_name().
 *
 * Limits: without root, proc_pidinfo() on another user's process fails with
 * EPERM, so other users' listeners are NOT SEEN AT ALL (unlike Linux, where
 * the kernel reports them with their uid).  IPV6_V6ONLY is not reported: -1.
 */
#include "xbind.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libproc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/proc_info.h>
#include <unistd.h>

const char xb_owner_backend[] = "darwin";

/* All pids, allocated; *count set. */
static int list_pids(pid_t **out, int *count, xb_error *err)
{
    int tries;

    *out = NULL;
    *count = 0;
    for (tries = 0; tries < 8; tries++) {
        int bytes = proc_listpids(PROC_ALL_PIDS, 0, NULL, 0);
        pid_t *pids;
        int got;
        if (bytes <= 0)
            return xb_fail(err, XB_STAGE_OWNER, errno ? errno : EIO, "proc_listpids");
        bytes += 64 * (int)sizeof(pid_t); /* room for processes started meanwhile */
        pids = (pid_t *)malloc((size_t)bytes);
        if (pids == NULL)
            return xb_fail(err, XB_STAGE_OWNER, ENOMEM, "pid list");
        got = proc_listpids(PROC_ALL_PIDS, 0, pids, bytes);
        if (got <= 0) {
            int e = errno ? errno : EIO;
            free(pids);
            return xb_fail(err, XB_STAGE_OWNER, e, "proc_listpids");
        }
        if (got < bytes) {
            *out = pids;
            *count = got / (int)sizeof(pid_t);
            return 0;
        }
        free(pids); /* the buffer was filled: maybe more, try again larger */
    }
    return xb_fail(err, XB_STAGE_OWNER, EAGAIN, "proc_listpids (process table keeps growing)");
}

static int scan_process(pid_t pid, int port, xb_listeners *out, xb_error *err)
{
    struct proc_fdinfo *fds = NULL;
    int bytes, n, i, rc = 0;
    char name[XB_OWNER_NAMELEN];
    int have_name = 0;

    bytes = proc_pidinfo(pid, PROC_PIDLISTFDS, 0, NULL, 0);
    if (bytes <= 0)
        return 0; /* gone, or not ours to inspect (EPERM): invisible */
    bytes += 16 * (int)sizeof(struct proc_fdinfo);
    fds = (struct proc_fdinfo *)malloc((size_t)bytes);
    if (fds == NULL)
        return xb_fail(err, XB_STAGE_OWNER, ENOMEM, "fd list");
    bytes = proc_pidinfo(pid, PROC_PIDLISTFDS, 0, fds, bytes);
    if (bytes <= 0) {
        free(fds);
        return 0;
    }
    n = bytes / (int)sizeof(struct proc_fdinfo);
    for (i = 0; i < n; i++) {
        struct socket_fdinfo si;
        const struct in_sockinfo *ini;
        xb_listener *item = NULL;
        size_t k;
        int family, lport, j, seen = 0;

        if (fds[i].proc_fdtype != PROX_FDTYPE_SOCKET)
            continue;
        memset(&si, 0, sizeof(si));
        if (proc_pidfdinfo(pid, fds[i].proc_fd, PROC_PIDFDSOCKETINFO, &si, sizeof(si)) !=
            (int)sizeof(si))
            continue; /* closed meanwhile */
        if (si.psi.soi_kind != SOCKINFO_TCP)
            continue;
        family = si.psi.soi_family;
        if (family != AF_INET && family != AF_INET6)
            continue;
        if (si.psi.soi_proto.pri_tcp.tcpsi_state != TSI_S_LISTEN)
            continue;
        ini = &si.psi.soi_proto.pri_tcp.tcpsi_ini;
        lport = ntohs((uint16_t)ini->insi_lport);
        if (lport != port)
            continue;

        for (k = 0; k < out->count; k++)
            if (out->items[k].inode == (unsigned long long)si.psi.soi_so)
                item = &out->items[k];
        if (item == NULL) {
            item = xb_listeners_add(out);
            if (item == NULL) {
                rc = xb_fail(err, XB_STAGE_OWNER, ENOMEM, "listener list");
                break;
            }
            item->family = family;
            item->port = lport;
            item->inode = (unsigned long long)si.psi.soi_so;
            item->uid = (long long)si.psi.soi_stat.vst_uid;
            if (inet_ntop(family,
                          family == AF_INET ? (const void *)&ini->insi_laddr.ina_46.i46a_addr4
                                            : (const void *)&ini->insi_laddr.ina_6,
                          item->host, (socklen_t)sizeof(item->host)) == NULL) {
                out->count--;
                rc = xb_fail(err, XB_STAGE_OWNER, errno, "inet_ntop");
                break;
            }
        }
        for (j = 0; j < item->npids; j++)
            if (item->pids[j] == (long)pid)
                seen = 1;
        if (seen)
            continue;
        if (item->npids >= XB_OWNER_MAXPIDS) {
            item->pids_truncated = 1;
            continue;
        }
        if (!have_name) {
            int len = proc_name(pid, name, (uint32_t)sizeof(name));
            if (len <= 0)
                name[0] = '\0';
            else
                name[len < (int)sizeof(name) ? len : (int)sizeof(name) - 1] = '\0';
            have_name = 1;
        }
        item->pids[item->npids] = (long)pid;
        memcpy(item->names[item->npids], name, sizeof(name));
        item->npids++;
    }
    free(fds);
    return rc;
}

int xb_owner_listeners(int port, unsigned flags, xb_listeners *out, xb_error *err)
{
    pid_t *pids = NULL;
    pid_t self = getpid();
    int count = 0, i, rc = 0;

    (void)flags; /* XB_OWNER_SELF_ONLY: nothing to skip here */
    if (out == NULL)
        return xb_fail(err, XB_STAGE_OWNER, EINVAL, "no output list");
    xb_listeners_free(out);
    if (port < 1 || port > 65535)
        return xb_fail(err, XB_STAGE_OWNER, EINVAL, "port out of range 1-65535");
    /* Our own process first. */
    if (scan_process(self, port, out, err) != 0)
        goto failed;
    if (list_pids(&pids, &count, err) != 0)
        goto failed;
    for (i = 0; i < count; i++) {
        if (pids[i] <= 0 || pids[i] == self)
            continue;
        if (scan_process(pids[i], port, out, err) != 0) {
            rc = -1;
            break;
        }
    }
    free(pids);
    if (rc != 0)
        goto failed;
    if (xb_owner_fill_users(out, err) != 0)
        goto failed;
    return 0;

failed:
    xb_listeners_free(out);
    return -1;
}

int xb_owner_process_user(long pid, long long *uid, char *user, size_t userlen, xb_error *err)
{
    struct proc_bsdinfo info;

    if (uid == NULL || user == NULL || userlen == 0)
        return xb_fail(err, XB_STAGE_OWNER, EINVAL, "xb_owner_process_user");
    *uid = -1;
    user[0] = '\0';
    if (pid <= 0)
        return xb_fail(err, XB_STAGE_OWNER, ESRCH, "no such process");
    memset(&info, 0, sizeof(info));
    if (proc_pidinfo((pid_t)pid, PROC_PIDTBSDINFO, 0, &info, (int)sizeof(info)) !=
        (int)sizeof(info))
        return xb_fail(err, XB_STAGE_OWNER, errno ? errno : ESRCH, "proc_pidinfo(PROC_PIDTBSDINFO)");
    *uid = (long long)info.pbi_uid;
    return xb_owner_user_name(*uid, user, userlen, err);
}

/* --- the server end of a connection (xb_owner_connection) ------------------- *
 *
 * UNVERIFIED like the rest of this file (not compiled here).  macOS has no
 * table of connections a process can query: walk the processes (the given
 * pid first), their socket descriptors, and compare each TCP socket's local
 * and foreign address and port (tcpsi_ini) with the 4-tuple.  A connection
 * the server has not accept()ed yet is in no process: XB_CONN_NONE until it
 * is.  Other users' processes are invisible without root (as for listeners).
 */

/* <sys/proc_info.h> TSI_S_* (numbers: one of the names has a double underscore,
 * TSI_S__CLOSE_WAIT, on some SDKs). */
static int conn_state_of(int s)
{
    switch (s) {
    case 4: /* TSI_S_ESTABLISHED */
        return XB_CONN_ESTABLISHED;
    case 3: /* TSI_S_SYN_RECEIVED */
        return XB_CONN_SYN_RECEIVED;
    case 0:  /* CLOSED */
    case 5:  /* CLOSE_WAIT */
    case 6:  /* FIN_WAIT_1 */
    case 7:  /* CLOSING */
    case 8:  /* LAST_ACK */
    case 9:  /* FIN_WAIT_2 */
    case 10: /* TIME_WAIT */
        return XB_CONN_CLOSING;
    default: /* LISTEN, SYN_SENT */
        return XB_CONN_NONE;
    }
}

/* The 4 or 16 address bytes of one end of a socket, as `family` (AF_INET: an
 * IPv4 socket or the IPv4 side of a dual-stack one).  0 if it is not of that family. */
static int conn_addr_of(const struct in_sockinfo *ini, const struct in4in6_addr *a46,
                        const struct in6_addr *a6, int family, unsigned char raw[16])
{
    memset(raw, 0, 16);
    if (family == AF_INET && (ini->insi_vflag & INI_IPV4)) {
        memcpy(raw, &a46->i46a_addr4, 4);
        return 1;
    }
    if (family == AF_INET6 && (ini->insi_vflag & INI_IPV6)) {
        memcpy(raw, a6, 16);
        return 1;
    }
    return 0;
}

/* 1 if process pid has a socket with the 4-tuple (then *out is filled or its holder
 * list extended), 0 if not, -1 when memory runs out. */
static int conn_scan(pid_t pid, int family, const unsigned char *craw, int cport,
                     const unsigned char *sraw, int sport, xb_connection *out, xb_error *err)
{
    struct proc_fdinfo *fds;
    int bytes, n, i, found = 0;

    bytes = proc_pidinfo(pid, PROC_PIDLISTFDS, 0, NULL, 0);
    if (bytes <= 0)
        return 0; /* gone, or not ours to inspect */
    bytes += 16 * (int)sizeof(struct proc_fdinfo);
    fds = (struct proc_fdinfo *)malloc((size_t)bytes);
    if (fds == NULL)
        return xb_fail(err, XB_STAGE_OWNER, ENOMEM, "fd list");
    bytes = proc_pidinfo(pid, PROC_PIDLISTFDS, 0, fds, bytes);
    n = bytes > 0 ? bytes / (int)sizeof(struct proc_fdinfo) : 0;
    for (i = 0; i < n && !found; i++) {
        struct socket_fdinfo si;
        const struct in_sockinfo *ini;
        unsigned char l[16], f[16];
        xb_listener *item = &out->server;

        if (fds[i].proc_fdtype != PROX_FDTYPE_SOCKET)
            continue;
        memset(&si, 0, sizeof(si));
        if (proc_pidfdinfo(pid, fds[i].proc_fd, PROC_PIDFDSOCKETINFO, &si, sizeof(si)) !=
            (int)sizeof(si))
            continue;
        if (si.psi.soi_kind != SOCKINFO_TCP)
            continue;
        if (si.psi.soi_family != AF_INET && si.psi.soi_family != AF_INET6)
            continue;
        ini = &si.psi.soi_proto.pri_tcp.tcpsi_ini;
        if (ntohs((uint16_t)ini->insi_lport) != sport || ntohs((uint16_t)ini->insi_fport) != cport)
            continue;
        if (!conn_addr_of(ini, &ini->insi_laddr.ina_46, &ini->insi_laddr.ina_6, family, l) ||
            !conn_addr_of(ini, &ini->insi_faddr.ina_46, &ini->insi_faddr.ina_6, family, f) ||
            memcmp(l, sraw, 16) != 0 || memcmp(f, craw, 16) != 0)
            continue;
        if (si.psi.soi_proto.pri_tcp.tcpsi_state == 1) /* TSI_S_LISTEN */
            continue;
        found = 1;
        if (out->state == XB_CONN_NONE) {
            out->os_state = si.psi.soi_proto.pri_tcp.tcpsi_state;
            out->state = conn_state_of(out->os_state);
            item->family = si.psi.soi_family;
            item->port = sport;
            item->inode = (unsigned long long)si.psi.soi_so;
            item->uid = (long long)si.psi.soi_stat.vst_uid;
            if (inet_ntop(family, l, item->host, (socklen_t)sizeof(item->host)) == NULL) {
                free(fds);
                return xb_fail(err, XB_STAGE_OWNER, errno, "inet_ntop");
            }
        } else if (item->inode != (unsigned long long)si.psi.soi_so) {
            continue; /* another socket with the same 4-tuple: keep the first */
        }
        if (item->npids >= XB_OWNER_MAXPIDS) {
            item->pids_truncated = 1;
        } else {
            int len = proc_name(pid, item->names[item->npids], (uint32_t)XB_OWNER_NAMELEN);
            if (len <= 0)
                item->names[item->npids][0] = '\0';
            else
                item->names[item->npids][len < XB_OWNER_NAMELEN ? len : XB_OWNER_NAMELEN - 1] =
                    '\0';
            item->pids[item->npids++] = (long)pid;
        }
    }
    free(fds);
    return found;
}

int xb_owner_connection(const xb_addr *client, const xb_addr *server, long pid, unsigned flags,
                        xb_connection *out, xb_error *err)
{
    unsigned char craw[16], sraw[16];
    int cfamily, cport, sport, count = 0, i, r;
    unsigned long scope;
    pid_t *pids = NULL;

    (void)flags;
    if (xb_connection_ends(client, server, out, &cfamily, craw, &cport, sraw, &sport, &scope,
                           err) != 0)
        return -1;
    if (pid > 0) {
        r = conn_scan((pid_t)pid, cfamily, craw, cport, sraw, sport, out, err);
        if (r != 0)
            return r < 0 ? -1 : 0; /* that process holds it: done */
    }
    if (list_pids(&pids, &count, err) != 0)
        return -1;
    for (i = 0; i < count; i++) {
        if (pids[i] <= 0 || (long)pids[i] == pid)
            continue;
        if (conn_scan(pids[i], cfamily, craw, cport, sraw, sport, out, err) < 0) {
            free(pids);
            xb_connection_init(out);
            return -1;
        }
    }
    free(pids);
    return 0; /* user stays "": twisted_patch.client maps the uid */
}

/* --- issue 13: bound placeholders, process start times ------------------ */

int xb_owner_bound(int port, unsigned flags, xb_listeners *out, xb_error *err)
{
    (void)port;
    (void)flags;
    xb_listeners_free(out);
    return xb_fail(err, XB_STAGE_OWNER, ENOSYS, "bound, non-listening sockets are not listed on macOS yet");
}

int xb_owner_bound_visible(void)
{
    return 0;
}

int xb_process_start_time(long pid, double *out, xb_error *err)
{
    struct proc_bsdinfo info;
    int n;

    if (out == NULL)
        return xb_fail(err, XB_STAGE_OWNER, EINVAL, "xb_process_start_time");
    *out = 0.0;
    if (pid <= 0)
        return xb_fail(err, XB_STAGE_OWNER, ESRCH, "no such process");
    n = proc_pidinfo((int)pid, PROC_PIDTBSDINFO, 0, &info, (int)sizeof(info));
    if (n <= 0)
        return xb_fail(err, XB_STAGE_OWNER, errno ? errno : ESRCH, "proc_pidinfo(PROC_PIDTBSDINFO)");
    if (n < (int)sizeof(info))
        return xb_fail(err, XB_STAGE_OWNER, EIO, "proc_pidinfo(PROC_PIDTBSDINFO): short answer");
    *out = (double)info.pbi_start_tvsec + (double)info.pbi_start_tvusec / 1e6;
    return 0;
}

int xb_owner_timewait(int port, size_t *count, xb_error *err)
{
    (void)port;
    if (count)
        *count = 0;
    return xb_fail(err, XB_STAGE_OWNER, ENOSYS, "TIME_WAIT entries are not counted on macOS");
}
