/*
 * owner_linux.c -- who listens on a TCP port, on Linux.
 *
 * 1. One NETLINK_SOCK_DIAG dump request per family (AF_INET, AF_INET6),
 *    restricted in the kernel to TCP_LISTEN sockets (idiag_states) whose
 *    local port is the one asked for (INET_DIAG_REQ_BYTECODE with
 *    INET_DIAG_BC_S_GE / INET_DIAG_BC_S_LE, as iproute2's ss builds it).
 *    The kernel answers with the uid, socket inode and socket cookie of
 *    each listener, whoever owns it.  /proc/net/tcp is never read.
 * 2. socket -> processes: our own process first, by getsockopt(SO_COOKIE)
 *    on each of our descriptors (scan_self); then the other processes whose
 *    /proc/PID belongs to a listener's uid or to ours, by the links
 *    /proc/PID/fd/N -> "socket:[INODE]" (scan_others; other users'
 *    processes are unreadable unless we are root: their listeners are then
 *    reported with the uid alone).
 * 3. Process names from /proc/PID/comm, user names from getpwuid_r()
 *    (xb_owner_user_name, owner_posix.c).
 *
 * The reply parser xb_owner_parse_diag() is a pure function over a byte
 * buffer (see xbind.h) so that it can be fuzzed on its own.
 */
#ifndef _GNU_SOURCE
#  define _GNU_SOURCE 1 /* SOCK_CLOEXEC, O_CLOEXEC, readlinkat */
#endif
#include "xbind.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/uio.h>
#include <unistd.h>

const char xb_owner_backend[] = "linux";

/* include/net/tcp_states.h (not part of the UAPI headers). */
#define XB_TCP_LISTEN 10
#define XB_TCP_TIME_WAIT 6
#define XB_TCP_CLOSE 7
/* sock_diag only, Linux 6.6+: asks for bound sockets that neither listen nor
 * connect; they are reported in state TCP_CLOSE (measured on 6.18). */
#define XB_TCP_BOUND_INACTIVE 13

/* The receive buffer: the kernel never sends a datagram larger than this
 * for a dump (it sizes them to min(PAGE_SIZE, 8192) or the reader's buffer
 * up to 32 KiB); MSG_TRUNC is checked anyway. */
#define XB_DIAG_BUFSIZE 65536

/* --- the pure reply parser ---------------------------------------------- */

static int parse_attributes(const unsigned char *p, size_t len, xb_listener *item)
{
    size_t off = 0;

    while (len - off >= NLA_HDRLEN) {
        struct nlattr a;
        size_t step;

        memcpy(&a, p + off, sizeof(a));
        if (a.nla_len < NLA_HDRLEN || a.nla_len > len - off)
            return -1;
        /* Only an AF_INET6 entry has a V6ONLY flag (xbind.h: -1 for AF_INET), whatever
         * the reply says: found by tests/native/fuzz/fuzz_owner_netlink.c. */
        if ((a.nla_type & NLA_TYPE_MASK) == INET_DIAG_SKV6ONLY && a.nla_len >= NLA_HDRLEN + 1 &&
            item->family == AF_INET6)
            item->v6only = p[off + NLA_HDRLEN] ? 1 : 0;
        step = ((size_t)a.nla_len + NLA_ALIGNTO - 1) & ~(size_t)(NLA_ALIGNTO - 1);
        if (step > len - off)
            step = len - off; /* the last attribute may lack its padding */
        off += step;
    }
    return off == len ? 0 : -1;
}

/* xb_owner_parse_diag() for entries of a dump of `state` (TCP_LISTEN, or
 * TCP_BOUND_INACTIVE: entries in TCP_CLOSE or TCP_BOUND_INACTIVE). */
static int parse_diag(const void *buf, size_t len, unsigned int seq, int port, int state,
                      xb_listeners *out, xb_error *err)
{
    const unsigned char *p = (const unsigned char *)buf;
    size_t off = 0;

    if (out == NULL || (buf == NULL && len != 0))
        return xb_fail(err, XB_STAGE_OWNER, EINVAL, "xb_owner_parse_diag");

    while (len - off >= NLMSG_HDRLEN) {
        struct nlmsghdr h;
        size_t step;

        memcpy(&h, p + off, sizeof(h));
        if (h.nlmsg_len < NLMSG_HDRLEN || h.nlmsg_len > len - off)
            return xb_fail(err, XB_STAGE_OWNER, EBADMSG, "sock_diag reply: bad netlink message length");
        if (h.nlmsg_seq != seq)
            return xb_fail(err, XB_STAGE_OWNER, EBADMSG, "sock_diag reply: unexpected sequence number");
        if (h.nlmsg_type == NLMSG_DONE)
            return 1;
        if (h.nlmsg_type == NLMSG_ERROR) {
            struct nlmsgerr e;
            if (h.nlmsg_len < NLMSG_HDRLEN + sizeof(e))
                return xb_fail(err, XB_STAGE_OWNER, EBADMSG, "sock_diag reply: short error message");
            memcpy(&e, p + off + NLMSG_HDRLEN, sizeof(e));
            if (e.error < 0 && e.error > -4096)
                return xb_fail(err, XB_STAGE_OWNER, -e.error, "NETLINK_SOCK_DIAG request");
            if (e.error != 0)
                return xb_fail(err, XB_STAGE_OWNER, EBADMSG, "sock_diag reply: bad error code");
            /* error 0 is an acknowledgement: nothing to do */
        } else if (h.nlmsg_flags & NLM_F_DUMP_INTR) {
            return xb_fail(err, XB_STAGE_OWNER, EAGAIN, "sock_diag dump interrupted (sockets changed during it)");
        } else if (h.nlmsg_type == SOCK_DIAG_BY_FAMILY) {
            struct inet_diag_msg m;
            size_t payload = h.nlmsg_len - NLMSG_HDRLEN;
            size_t head = NLMSG_ALIGN(sizeof(m));
            xb_listener *item;
            int sport;

            if (payload < sizeof(m))
                return xb_fail(err, XB_STAGE_OWNER, EBADMSG, "sock_diag reply: short inet_diag_msg");
            memcpy(&m, p + off + NLMSG_HDRLEN, sizeof(m));
            sport = ntohs(m.id.idiag_sport);
            if ((m.idiag_family == AF_INET || m.idiag_family == AF_INET6) &&
                (m.idiag_state == state ||
             (state == XB_TCP_BOUND_INACTIVE && m.idiag_state == XB_TCP_CLOSE)) &&
            (port < 0 || sport == port)) {
                item = xb_listeners_add(out);
                if (item == NULL)
                    return xb_fail(err, XB_STAGE_OWNER, ENOMEM, "listener list");
                item->family = m.idiag_family;
                item->port = sport;
                item->uid = (long long)m.idiag_uid;
                item->inode = (unsigned long long)m.idiag_inode;
                if (m.id.idiag_cookie[0] != INET_DIAG_NOCOOKIE ||
                    m.id.idiag_cookie[1] != INET_DIAG_NOCOOKIE)
                    item->cookie = (unsigned long long)m.id.idiag_cookie[0] |
                                   ((unsigned long long)m.id.idiag_cookie[1] << 32);
                if (inet_ntop(m.idiag_family, m.id.idiag_src, item->host,
                              (socklen_t)sizeof(item->host)) == NULL) {
                    out->count--;
                    return xb_fail(err, XB_STAGE_OWNER, errno, "inet_ntop");
                }
                if (m.idiag_family == AF_INET)
                    item->v6only = -1;
                if (payload > head &&
                    parse_attributes(p + off + NLMSG_HDRLEN + head, payload - head, item) != 0) {
                    out->count--;
                    return xb_fail(err, XB_STAGE_OWNER, EBADMSG, "sock_diag reply: bad attribute");
                }
            }
        }
        /* other message types (NLMSG_NOOP, ...) are skipped */
        step = ((size_t)h.nlmsg_len + NLMSG_ALIGNTO - 1) & ~(size_t)(NLMSG_ALIGNTO - 1);
        if (step > len - off)
            step = len - off;
        off += step;
    }
    if (off != len)
        return xb_fail(err, XB_STAGE_OWNER, EBADMSG, "sock_diag reply: trailing bytes");
    return 0;
}

int xb_owner_parse_diag(const void *buf, size_t len, unsigned int seq, int port,
                        xb_listeners *out, xb_error *err)
{
    return parse_diag(buf, len, seq, port, XB_TCP_LISTEN, out, err);
}

/* --- the netlink exchange ------------------------------------------------ */

/* What one datagram from the kernel (buf, len bytes) meant to the caller of
 * diag_exchange(): -1 failed (err set), 0 wait for more, 1 the answer is complete. */
typedef int (*diag_reply_fn)(const unsigned char *buf, size_t len, void *ctx, xb_error *err);

/* Send one SOCK_DIAG_BY_FAMILY request on a new NETLINK_SOCK_DIAG socket: `r`,
 * NLM_F_REQUEST | `nl_flags`, and, if nbc > 0, the nbc (at most 4) bytecode ops
 * `bc` as INET_DIAG_REQ_BYTECODE.  Then hand every datagram from the kernel
 * (received into buf, buflen bytes) to `reply` until it says done. */
static int diag_exchange(unsigned short nl_flags, unsigned int seq,
                         const struct inet_diag_req_v2 *r, const struct inet_diag_bc_op *bc,
                         size_t nbc, unsigned char *buf, size_t buflen, diag_reply_fn reply,
                         void *ctx, xb_error *err)
{
    /* nlmsghdr | inet_diag_req_v2 [| nlattr | bytecode ops] */
    unsigned char req[NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct inet_diag_req_v2)) + NLA_HDRLEN +
                      4 * sizeof(struct inet_diag_bc_op)];
    size_t reqlen = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(*r));
    struct nlmsghdr h;
    struct sockaddr_nl kernel;
    int fd, rc = -1, done = 0;

    if (nbc > 4)
        return xb_fail(err, XB_STAGE_OWNER, EINVAL, "sock_diag request: too much bytecode");
    if (nbc > 0)
        reqlen += NLA_HDRLEN + nbc * sizeof(*bc);
    memset(req, 0, sizeof(req));
    memset(&h, 0, sizeof(h));
    h.nlmsg_len = (unsigned int)reqlen;
    h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    h.nlmsg_flags = (unsigned short)(NLM_F_REQUEST | nl_flags);
    h.nlmsg_seq = seq;
    memcpy(req, &h, sizeof(h));
    memcpy(req + NLMSG_HDRLEN, r, sizeof(*r));
    if (nbc > 0) {
        struct nlattr a;
        memset(&a, 0, sizeof(a));
        a.nla_len = (unsigned short)(NLA_HDRLEN + nbc * sizeof(*bc));
        a.nla_type = INET_DIAG_REQ_BYTECODE;
        memcpy(req + NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(*r)), &a, sizeof(a));
        memcpy(req + NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(*r)) + NLA_HDRLEN, bc, nbc * sizeof(*bc));
    }

    fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0)
        return xb_fail(err, XB_STAGE_OWNER, errno, "socket(AF_NETLINK, NETLINK_SOCK_DIAG)");

    memset(&kernel, 0, sizeof(kernel));
    kernel.nl_family = AF_NETLINK;
    for (;;) {
        ssize_t n = sendto(fd, req, reqlen, 0, (struct sockaddr *)&kernel,
                           (socklen_t)sizeof(kernel));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            xb_fail(err, XB_STAGE_OWNER, errno, "sendto(NETLINK_SOCK_DIAG)");
            goto out;
        }
        if ((size_t)n != reqlen) {
            xb_fail(err, XB_STAGE_OWNER, EIO, "sendto(NETLINK_SOCK_DIAG): short write");
            goto out;
        }
        break;
    }

    while (!done) {
        struct sockaddr_nl from;
        struct iovec iov;
        struct msghdr mh;
        ssize_t n;
        int prc;

        memset(&from, 0, sizeof(from));
        memset(&mh, 0, sizeof(mh));
        iov.iov_base = buf;
        iov.iov_len = buflen;
        mh.msg_name = &from;
        mh.msg_namelen = (socklen_t)sizeof(from);
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        n = recvmsg(fd, &mh, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            xb_fail(err, XB_STAGE_OWNER, errno, "recvmsg(NETLINK_SOCK_DIAG)");
            goto out;
        }
        if (n == 0) {
            xb_fail(err, XB_STAGE_OWNER, EBADMSG,
                    "recvmsg(NETLINK_SOCK_DIAG): end of stream before the whole answer");
            goto out;
        }
        if (mh.msg_flags & MSG_TRUNC) {
            xb_fail(err, XB_STAGE_OWNER, EMSGSIZE, "recvmsg(NETLINK_SOCK_DIAG): reply truncated");
            goto out;
        }
        if (mh.msg_namelen < sizeof(from) || from.nl_family != AF_NETLINK || from.nl_pid != 0)
            continue; /* not from the kernel */
        prc = reply(buf, (size_t)n, ctx, err);
        if (prc < 0)
            goto out;
        done = prc;
    }
    rc = 0;

out:
    if (close(fd) != 0 && rc == 0)
        rc = xb_fail(err, XB_STAGE_OWNER, errno, "close(NETLINK_SOCK_DIAG)");
    return rc;
}

/* --- the dump request --------------------------------------------------- */

struct dump_ctx {
    unsigned int seq;
    int port, state;
    xb_listeners *out;
};

static int dump_reply(const unsigned char *buf, size_t len, void *ctx, xb_error *err)
{
    const struct dump_ctx *c = (const struct dump_ctx *)ctx;
    return parse_diag(buf, len, c->seq, c->port, c->state, c->out, err);
}

/* One comparison of the local port with `port` (code INET_DIAG_BC_S_GE or _S_LE) in
 * op[0..1]: the op, then an op whose `no` holds the port.  `yes` goes on to the next
 * comparison; `no` jumps `ops_to_reject` ops ahead, plus 4: past the end of the program,
 * which the kernel takes as "reject". */
static void bc_port_compare(struct inet_diag_bc_op *op, unsigned char code, unsigned ops_to_reject,
                            int port)
{
    op[0].code = code;
    op[0].yes = (unsigned char)(2 * sizeof(struct inet_diag_bc_op));
    op[0].no = (unsigned short)(ops_to_reject * sizeof(struct inet_diag_bc_op) + 4);
    op[1].code = INET_DIAG_BC_NOP;
    op[1].yes = 0;
    op[1].no = (unsigned short)port;
}

/* Dump the sockets of `family` on `port` in `state` into *out. */
static int diag_dump(int family, int port, int state, unsigned int seq, unsigned char *buf,
                     xb_listeners *out, xb_error *err)
{
    struct inet_diag_req_v2 r;
    struct inet_diag_bc_op bc[4];
    struct dump_ctx ctx;

    memset(&r, 0, sizeof(r));
    r.sdiag_family = (unsigned char)family;
    r.sdiag_protocol = IPPROTO_TCP;
    r.idiag_states = 1u << state;
    /* sport >= port AND sport <= port: "reject" is one op past the end. */
    bc_port_compare(&bc[0], INET_DIAG_BC_S_GE, 4, port);
    bc_port_compare(&bc[2], INET_DIAG_BC_S_LE, 2, port);
    ctx.seq = seq;
    ctx.port = port;
    ctx.state = state;
    ctx.out = out;
    return diag_exchange(NLM_F_DUMP, seq, &r, bc, 4, buf, XB_DIAG_BUFSIZE, dump_reply, &ctx, err);
}

/* --- inode -> processes ------------------------------------------------- */

/* errno values meaning "this process (or fd) is gone or not ours to see". */
static int skippable(int e)
{
    return e == ENOENT || e == ESRCH || e == EACCES || e == EPERM || e == ENOTDIR;
}

/* Read /proc/PID/comm into name (NUL-terminated, newline stripped); "" if unreadable. */
static void read_comm(long pid, char *name, size_t len)
{
    char path[64];
    int fd;
    ssize_t n;

    name[0] = '\0';
    if (snprintf(path, sizeof(path), "/proc/%ld/comm", pid) >= (int)sizeof(path))
        return;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return; /* gone or hidden: the name stays unknown */
    do {
        n = read(fd, name, len - 1);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        n = 0;
    name[n] = '\0';
    while (n > 0 && (name[n - 1] == '\n' || name[n - 1] == '\0'))
        name[--n] = '\0';
    (void)close(fd); /* read-only: nothing can be lost */
}

static int parse_socket_link(const char *link, unsigned long long *inode)
{
    static const char prefix[] = "socket:[";
    const char *p;
    unsigned long long v = 0;

    if (strncmp(link, prefix, sizeof(prefix) - 1) != 0)
        return 0;
    p = link + sizeof(prefix) - 1;
    if (!isdigit((unsigned char)*p))
        return 0;
    while (isdigit((unsigned char)*p)) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (ULLONG_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
        p++;
    }
    if (p[0] != ']' || p[1] != '\0')
        return 0;
    *inode = v;
    return 1;
}

/* Record `pid` (named `name`, read once per process on first use) as a holder of
 * list->items[i], unless it is already there.  Returns 1 if the pid was new for
 * this listener (counted towards "every listener found in this process"). */
static int add_holder(xb_listener *item, long pid, char *name, int *have_name)
{
    int k;

    for (k = 0; k < item->npids; k++)
        if (item->pids[k] == pid)
            return 0; /* the same socket on two fds of one process */
    if (item->npids >= XB_OWNER_MAXPIDS) {
        item->pids_truncated = 1;
        return 1;
    }
    if (!*have_name) {
        read_comm(pid, name, XB_OWNER_NAMELEN);
        *have_name = 1;
    }
    item->pids[item->npids] = pid;
    memcpy(item->names[item->npids], name, XB_OWNER_NAMELEN);
    item->npids++;
    return 1;
}

/* What walk_socket_fds() found: the inode of one socket a process holds;
 * return 1 to stop the walk. */
typedef int (*socket_fd_fn)(unsigned long long inode, void *ctx);

/* Call seen() for each socket among the fds in fddir (/proc/PID/fd, by
 * readlink: "socket:[INODE]") until it returns 1.  A process gone, or not ours
 * to see, holds none; an fd closed meanwhile is passed over.  0, or -1 with err set. */
static int walk_socket_fds(const char *fddir, socket_fd_fn seen, void *ctx, xb_error *err)
{
    DIR *d;
    struct dirent *e;
    int rc = 0;

    d = opendir(fddir);
    if (d == NULL)
        return skippable(errno) ? 0 : xb_fail(err, XB_STAGE_OWNER, errno, "opendir(/proc/PID/fd)");
    for (;;) {
        char link[64];
        ssize_t n;
        unsigned long long inode;

        errno = 0;
        e = readdir(d);
        if (e == NULL) {
            if (errno != 0 && !skippable(errno))
                rc = xb_fail(err, XB_STAGE_OWNER, errno, "readdir(/proc/PID/fd)");
            break;
        }
        if (e->d_name[0] == '.')
            continue;
        n = readlinkat(dirfd(d), e->d_name, link, sizeof(link) - 1);
        if (n < 0) {
            if (skippable(errno))
                continue; /* closed meanwhile */
            rc = xb_fail(err, XB_STAGE_OWNER, errno, "readlink(/proc/PID/fd/N)");
            break;
        }
        link[n] = '\0';
        if (parse_socket_link(link, &inode) && inode != 0 && seen(inode, ctx))
            break;
    }
    if (closedir(d) != 0 && rc == 0)
        rc = xb_fail(err, XB_STAGE_OWNER, errno, "closedir(/proc/PID/fd)");
    return rc;
}

struct process_scan {
    long pid;
    xb_listeners *list;
    char name[XB_OWNER_NAMELEN];
    int have_name;
    size_t found;
};

static int process_socket(unsigned long long inode, void *ctx)
{
    struct process_scan *s = (struct process_scan *)ctx;
    size_t i;

    for (i = 0; i < s->list->count; i++)
        if (s->list->items[i].inode == inode)
            s->found += (size_t)add_holder(&s->list->items[i], s->pid, s->name, &s->have_name);
    return s->found >= s->list->count;
}

/* Match the socket fds of one process (readlink of /proc/PID/fd/N) against the
 * listeners.  Stops as soon as every listener has been found in it: later fds
 * can only repeat a socket already counted. */
static int scan_process(long pid, const char *fddir, xb_listeners *list, xb_error *err)
{
    struct process_scan s;

    if (list->count == 0)
        return 0;
    s.pid = pid;
    s.list = list;
    s.have_name = 0;
    s.found = 0;
    return walk_socket_fds(fddir, process_socket, &s, err);
}

/* What walk_pids() found: process `pid`, entry `name` of /proc (open as procfd).
 * Return -1 (err set) to fail, 1 to stop the walk, 0 to go on. */
typedef int (*pid_fn)(int procfd, const char *name, long pid, void *ctx, xb_error *err);

/* Call each() for every process in /proc but our own.  No /proc mounted (or
 * not ours to read): no process.  0, or -1 with err set. */
static int walk_pids(pid_fn each, void *ctx, xb_error *err)
{
    DIR *d;
    struct dirent *e;
    long self = (long)getpid();
    int rc = 0;

    d = opendir("/proc");
    if (d == NULL) {
        if (errno == ENOENT || errno == EACCES)
            return 0; /* no /proc mounted: uids and inodes only */
        return xb_fail(err, XB_STAGE_OWNER, errno, "opendir(/proc)");
    }
    for (;;) {
        char *end;
        long pid;
        int r;

        errno = 0;
        e = readdir(d);
        if (e == NULL) {
            if (errno != 0)
                rc = xb_fail(err, XB_STAGE_OWNER, errno, "readdir(/proc)");
            break;
        }
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        errno = 0;
        pid = strtol(e->d_name, &end, 10);
        if (errno != 0 || *end != '\0' || pid <= 0 || pid == self)
            continue;
        r = each(dirfd(d), e->d_name, pid, ctx, err);
        if (r < 0)
            rc = -1;
        if (r != 0)
            break;
    }
    if (closedir(d) != 0 && rc == 0)
        rc = xb_fail(err, XB_STAGE_OWNER, errno, "closedir(/proc)");
    return rc;
}

/* --- inode -> processes: this process ------------------------------------
 *
 * Our own descriptors need no /proc/self/fd walk: getsockopt(SO_COOKIE) on
 * each descriptor number below the size of our fd table gives each socket's
 * cookie, which sock_diag reports for every listener (idiag_cookie).  A
 * descriptor that is not a socket answers ENOTSOCK without any filesystem
 * being asked (fstat() would ask NFS or FUSE, and can block on a dead
 * server), a free number EBADF.  Where cookies are not available (a kernel
 * before 4.12, headers without SO_COOKIE, a security module refusing the
 * call) the readlink walk of /proc/self/fd does the job instead.
 */

/* Upper bound of our descriptor numbers: FDSize of /proc/thread-self/status
 * (the size of the fd table getsockopt() looks in), else the soft
 * RLIMIT_NOFILE, capped. */
#define XB_FD_SCAN_CAP (1L << 20)

static long fd_table_size(void)
{
    static const char *const paths[] = {"/proc/thread-self/status", "/proc/self/status"};
    char text[4096];
    struct rlimit rl;
    size_t i;

    for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        ssize_t n;
        const char *p;
        int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        do {
            n = read(fd, text, sizeof(text) - 1);
        } while (n < 0 && errno == EINTR);
        (void)close(fd); /* read-only: nothing can be lost */
        if (n <= 0)
            continue;
        text[n] = '\0';
        p = strstr(text, "\nFDSize:");
        if (p != NULL) {
            char *end;
            long v;
            errno = 0;
            v = strtol(p + 8, &end, 10);
            if (errno == 0 && end != p + 8 && v > 0)
                return v < XB_FD_SCAN_CAP ? v : XB_FD_SCAN_CAP;
        }
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        return rl.rlim_cur < (rlim_t)XB_FD_SCAN_CAP ? (long)rl.rlim_cur : XB_FD_SCAN_CAP;
    return XB_FD_SCAN_CAP;
}

/* 0: done; 1: cookies cannot be used here (the caller walks /proc/self/fd);
 * -1: failure (err filled). */
static int scan_self_cookies(long self, xb_listeners *list, xb_error *err)
{
#ifdef SO_COOKIE
    char name[XB_OWNER_NAMELEN];
    int have_name = 0;
    size_t found = 0, i;
    long fd, size;

    for (i = 0; i < list->count; i++)
        if (list->items[i].cookie == 0)
            return 1; /* the kernel did not report it */
    size = fd_table_size();
    for (fd = 0; fd < size && found < list->count; fd++) {
        unsigned long long cookie = 0;
        socklen_t len = (socklen_t)sizeof(cookie);

        if (getsockopt((int)fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) != 0) {
            if (errno == EBADF || errno == ENOTSOCK)
                continue;
            if (errno == ENOPROTOOPT || errno == EOPNOTSUPP || errno == EACCES || errno == EPERM ||
                errno == EINVAL)
                return 1; /* no cookies from this kernel, or not for us */
            return xb_fail(err, XB_STAGE_OWNER, errno, "getsockopt(SO_COOKIE)");
        }
        if (len != (socklen_t)sizeof(cookie))
            return 1;
        for (i = 0; i < list->count; i++)
            if (list->items[i].cookie == cookie)
                found += (size_t)add_holder(&list->items[i], self, name, &have_name);
    }
    return 0;
#else
    (void)self;
    (void)list;
    (void)err;
    return 1;
#endif
}

static int scan_self(xb_listeners *list, xb_error *err)
{
    long self = (long)getpid();
    char path[64];
    size_t i;
    int rc = scan_self_cookies(self, list, err);

    if (rc <= 0)
        return rc;
    /* The walk starts again: forget what a partial cookie scan recorded. */
    for (i = 0; i < list->count; i++) {
        xb_listener *item = &list->items[i];
        if (item->npids > 0 && item->pids[0] == self) {
            item->npids = 0;
            item->pids_truncated = 0;
        }
    }
    if (snprintf(path, sizeof(path), "/proc/%ld/fd", self) >= (int)sizeof(path))
        return xb_fail(err, XB_STAGE_OWNER, ENAMETOOLONG, "/proc/PID/fd");
    return scan_process(self, path, list, err);
}

/* --- inode -> processes: other processes ----------------------------------
 *
 * A process is looked at (its /proc/PID/fd walked) only when /proc/PID
 * belongs to a uid that owns one of the listeners, or to our own uid: one
 * stat of /proc/PID each (the kernel gives /proc/PID the process's effective
 * uid, dumpable or not), and a busy host's processes of other users cost
 * nothing more.  The socket's uid is its creator's, so a daemon that switched
 * uid before listening (twistd --uid) is found by it; our own uid covers a
 * socket handed to one of our processes by someone else (socket activation
 * with User=, seen by that user) and, when we are not root, is all we could
 * read anyway.  Not found this way: a socket handed to a process of a third
 * uid (SCM_RIGHTS, or socket activation with User=, as seen by root): such a
 * listener is reported with its creator's processes only, unless
 * XB_OWNER_ALL_PROCESSES asks for every process.  The walk ends early when
 * no listener can take another pid (every list full and marked truncated).
 */

static int uid_wanted(const xb_listeners *list, uid_t uid, uid_t me)
{
    size_t i;

    if (uid == me)
        return 1;
    for (i = 0; i < list->count; i++)
        if (list->items[i].uid >= 0 && (unsigned long long)list->items[i].uid == (unsigned long long)uid)
            return 1;
    return 0;
}

static int all_truncated(const xb_listeners *list)
{
    size_t i;

    for (i = 0; i < list->count; i++)
        if (!list->items[i].pids_truncated)
            return 0;
    return 1;
}

struct others_scan {
    xb_listeners *list;
    int every_process;
    uid_t me;
};

static int scan_other(int procfd, const char *name, long pid, void *ctx, xb_error *err)
{
    struct others_scan *s = (struct others_scan *)ctx;
    struct stat st;
    char path[64];

    if (!s->every_process) {
        if (fstatat(procfd, name, &st, 0) != 0) {
            if (skippable(errno))
                return 0; /* exited meanwhile */
            return xb_fail(err, XB_STAGE_OWNER, errno, "stat(/proc/PID)");
        }
        if (!uid_wanted(s->list, st.st_uid, s->me))
            return 0;
    }
    if (snprintf(path, sizeof(path), "/proc/%ld/fd", pid) >= (int)sizeof(path))
        return 0;
    if (scan_process(pid, path, s->list, err) != 0)
        return -1;
    return all_truncated(s->list);
}

static int scan_others(xb_listeners *list, int every_process, xb_error *err)
{
    struct others_scan s;

    if (all_truncated(list))
        return 0;
    s.list = list;
    s.every_process = every_process;
    s.me = geteuid();
    return walk_pids(scan_other, &s, err);
}

/* Our own process first (the common question is "is it us?"), then the others. */
static int find_processes(xb_listeners *list, unsigned flags, xb_error *err)
{
    if (scan_self(list, err) != 0)
        return -1;
    if (flags & XB_OWNER_SELF_ONLY)
        return 0;
    return scan_others(list, (flags & XB_OWNER_ALL_PROCESSES) != 0, err);
}

/* --- the public functions ----------------------------------------------- */

/* The sockets in `state` on `port`, with their processes and users. */
static int owner_dump(int port, int state, unsigned flags, xb_listeners *out, xb_error *err)
{
    unsigned char *buf;
    int rc;

    if (out == NULL)
        return xb_fail(err, XB_STAGE_OWNER, EINVAL, "no output list");
    xb_listeners_free(out);
    if (port < 1 || port > 65535)
        return xb_fail(err, XB_STAGE_OWNER, EINVAL, "port out of range 1-65535");
    buf = (unsigned char *)malloc(XB_DIAG_BUFSIZE);
    if (buf == NULL)
        return xb_fail(err, XB_STAGE_OWNER, ENOMEM, "sock_diag buffer");
    rc = diag_dump(AF_INET, port, state, 0x74700004u, buf, out, err);
    if (rc == 0)
        rc = diag_dump(AF_INET6, port, state, 0x74700006u, buf, out, err);
    free(buf);
    if (rc == 0 && out->count > 0 && (flags & XB_OWNER_NO_PROCESSES) == 0)
        rc = find_processes(out, flags, err);
    if (rc == 0)
        rc = xb_owner_fill_users(out, err);
    if (rc != 0)
        xb_listeners_free(out);
    return rc;
}

int xb_owner_listeners(int port, unsigned flags, xb_listeners *out, xb_error *err)
{
    return owner_dump(port, XB_TCP_LISTEN, flags, out, err);
}

int xb_owner_process_user(long pid, long long *uid, char *user, size_t userlen, xb_error *err)
{
    char path[64];
    struct stat st;

    if (uid == NULL || user == NULL || userlen == 0)
        return xb_fail(err, XB_STAGE_OWNER, EINVAL, "xb_owner_process_user");
    *uid = -1;
    user[0] = '\0';
    if (pid <= 0)
        return xb_fail(err, XB_STAGE_OWNER, ESRCH, "no such process");
    if (snprintf(path, sizeof(path), "/proc/%ld", pid) >= (int)sizeof(path))
        return xb_fail(err, XB_STAGE_OWNER, ENAMETOOLONG, "/proc/PID");
    if (stat(path, &st) != 0)
        return xb_fail(err, XB_STAGE_OWNER, errno == ENOENT ? ESRCH : errno, "stat(/proc/PID)");
    *uid = (long long)st.st_uid;
    return xb_owner_user_name(*uid, user, userlen, err);
}

/* --- the server end of a connection (xb_owner_connection) ------------------- *
 *
 * One NETLINK_SOCK_DIAG request without NLM_F_DUMP, for the exact 4-tuple:
 * the kernel looks the socket up in its own hash tables
 * (inet_diag_find_one_icsk: the established table -- request sockets and
 * TIME_WAIT included -- and, when nothing is there, the listener), so the
 * cost does not grow with the number of sockets on the host.  A listener in
 * the reply means "no socket with this 4-tuple" (XB_CONN_NONE).  The inode is
 * 0 while the server has not accept()ed the connection (no process holds it
 * yet; the uid is already the listener's).  Holders: the links
 * /proc/PID/fd/N -> "socket:[INODE]", the given pid first.
 */

/* include/net/tcp_states.h */
#define XB_CONN_TCP_ESTABLISHED 1
#define XB_CONN_TCP_SYN_RECV 3
#define XB_CONN_TCP_NEW_SYN_RECV 12

static int conn_state(int tcp_state)
{
    switch (tcp_state) {
    case XB_CONN_TCP_ESTABLISHED:
        return XB_CONN_ESTABLISHED;
    case XB_CONN_TCP_SYN_RECV:
    case XB_CONN_TCP_NEW_SYN_RECV:
        return XB_CONN_SYN_RECEIVED;
    case 4: case 5: case 6: case 7: case 8: case 9: case 11: /* FIN_WAIT1 .. CLOSING */
        return XB_CONN_CLOSING;
    default: /* LISTEN: the kernel fell back to the listener; SYN_SENT: not a server end */
        return XB_CONN_NONE;
    }
}

/* Whether a reply's address (family `rfamily`, 16 bytes) is `raw` of `family`. */
static int conn_same_addr(int rfamily, const unsigned char *reply, int family,
                          const unsigned char *raw)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (rfamily == family)
        return memcmp(reply, raw, family == AF_INET ? 4 : 16) == 0;
    if (rfamily == AF_INET6 && family == AF_INET) /* a dual-stack server socket */
        return memcmp(reply, mapped, 12) == 0 && memcmp(reply + 12, raw, 4) == 0;
    return 0;
}

struct conn_ctx {
    unsigned int seq;
    int family, cport, sport;
    const unsigned char *craw, *sraw;
    xb_connection *out;
};

/* The answer to conn_diag_one's request: one message (NLMSG_ERROR -ENOENT: no such socket). */
static int conn_reply(const unsigned char *buf, size_t len, void *ctx, xb_error *err)
{
    const struct conn_ctx *c = (const struct conn_ctx *)ctx;
    xb_connection *out = c->out;
    struct nlmsghdr m;

    if (len < NLMSG_HDRLEN)
        return xb_fail(err, XB_STAGE_OWNER, EBADMSG, "sock_diag reply: short message");
    memcpy(&m, buf, sizeof(m));
    if (m.nlmsg_len < NLMSG_HDRLEN || m.nlmsg_len > len)
        return xb_fail(err, XB_STAGE_OWNER, EBADMSG, "sock_diag reply: bad netlink message length");
    if (m.nlmsg_seq != c->seq)
        return 0; /* not the answer to this request */
    if (m.nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr e;
        if (m.nlmsg_len < NLMSG_HDRLEN + sizeof(e))
            return xb_fail(err, XB_STAGE_OWNER, EBADMSG, "sock_diag reply: short error message");
        memcpy(&e, buf + NLMSG_HDRLEN, sizeof(e));
        if (e.error == -ENOENT)
            return 1; /* no such socket: state stays XB_CONN_NONE */
        if (e.error < 0 && e.error > -4096)
            return xb_fail(err, XB_STAGE_OWNER, -e.error, "NETLINK_SOCK_DIAG request");
        return xb_fail(err, XB_STAGE_OWNER, EBADMSG, "sock_diag reply: unexpected acknowledgement");
    }
    if (m.nlmsg_type == SOCK_DIAG_BY_FAMILY) {
        struct inet_diag_msg d;
        int rfamily;

        if (m.nlmsg_len < NLMSG_HDRLEN + sizeof(d))
            return xb_fail(err, XB_STAGE_OWNER, EBADMSG, "sock_diag reply: short inet_diag_msg");
        memcpy(&d, buf + NLMSG_HDRLEN, sizeof(d));
        rfamily = d.idiag_family;
        if ((rfamily != AF_INET && rfamily != AF_INET6) ||
            ntohs(d.id.idiag_sport) != c->sport || ntohs(d.id.idiag_dport) != c->cport ||
            !conn_same_addr(rfamily, (const unsigned char *)d.id.idiag_src, c->family, c->sraw) ||
            !conn_same_addr(rfamily, (const unsigned char *)d.id.idiag_dst, c->family, c->craw))
            return 1; /* the listener (or anything not this 4-tuple): nobody has it */
        out->os_state = d.idiag_state;
        out->state = conn_state(d.idiag_state);
        if (out->state == XB_CONN_NONE)
            return 1;
        out->server.family = rfamily;
        out->server.port = c->sport;
        out->server.uid = (long long)d.idiag_uid;
        out->server.inode = (unsigned long long)d.idiag_inode;
        if (out->state == XB_CONN_SYN_RECEIVED) {
            /* a request socket: the kernel reports uid 0 and no inode for it */
            out->server.uid = -1;
            out->server.inode = 0;
        }
        if (inet_ntop(rfamily, d.id.idiag_src, out->server.host,
                      (socklen_t)sizeof(out->server.host)) == NULL)
            return xb_fail(err, XB_STAGE_OWNER, errno, "inet_ntop");
        return 1;
    }
    return 0; /* anything else (NLMSG_NOOP, ...): wait for the answer */
}

static int conn_diag_one(int family, const unsigned char *craw, int cport,
                         const unsigned char *sraw, int sport, unsigned long scope,
                         xb_connection *out, xb_error *err)
{
    unsigned char buf[16384];
    struct inet_diag_req_v2 r;
    struct conn_ctx ctx;
    size_t alen = family == AF_INET ? 4 : 16;

    memset(&r, 0, sizeof(r));
    r.sdiag_family = (unsigned char)family;
    r.sdiag_protocol = IPPROTO_TCP;
    r.idiag_states = ~0u;
    /* the socket looked for: local = the server address, remote = the client's */
    r.id.idiag_sport = htons((unsigned short)sport);
    r.id.idiag_dport = htons((unsigned short)cport);
    memcpy(r.id.idiag_src, sraw, alen);
    memcpy(r.id.idiag_dst, craw, alen);
    r.id.idiag_if = (unsigned int)scope;
    r.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    ctx.seq = 0x74700011u;
    ctx.family = family;
    ctx.cport = cport;
    ctx.sport = sport;
    ctx.craw = craw;
    ctx.sraw = sraw;
    ctx.out = out;
    /* one socket, no dump */
    return diag_exchange(0, ctx.seq, &r, NULL, 0, buf, sizeof(buf), conn_reply, &ctx, err);
}

struct socket_search {
    unsigned long long inode;
    int found;
};

static int is_the_socket(unsigned long long inode, void *ctx)
{
    struct socket_search *s = (struct socket_search *)ctx;

    s->found = inode == s->inode;
    return s->found;
}

/* 1 if process pid holds the socket item->inode -- then added to item --, 0 if
 * not (or the process is gone or not ours to see), -1 on an unexpected error. */
static int conn_scan_pid(long pid, xb_listener *item, xb_error *err)
{
    char path[64], name[XB_OWNER_NAMELEN];
    struct socket_search s;
    int have_name = 0;

    if (snprintf(path, sizeof(path), "/proc/%ld/fd", pid) >= (int)sizeof(path))
        return 0;
    s.inode = item->inode;
    s.found = 0;
    if (walk_socket_fds(path, is_the_socket, &s, err) != 0)
        return -1;
    if (s.found)
        (void)add_holder(item, pid, name, &have_name);
    return s.found;
}

struct holder_search {
    long pid; /* scanned first, already */
    xb_listener *item;
};

static int conn_other(int procfd, const char *name, long other, void *ctx, xb_error *err)
{
    struct holder_search *s = (struct holder_search *)ctx;

    (void)procfd;
    (void)name;
    if (other == s->pid)
        return 0;
    return conn_scan_pid(other, s->item, err) < 0 ? -1 : 0;
}

static int conn_holders(long pid, xb_listener *item, xb_error *err)
{
    struct holder_search s;
    long self = (long)getpid();
    int r;

    if (pid > 0) {
        r = conn_scan_pid(pid, item, err);
        if (r != 0)
            return r < 0 ? -1 : 0; /* it holds the socket: done */
    }
    if (pid != self && conn_scan_pid(self, item, err) < 0)
        return -1;
    s.pid = pid;
    s.item = item;
    return walk_pids(conn_other, &s, err);
}

int xb_owner_connection(const xb_addr *client, const xb_addr *server, long pid, unsigned flags,
                        xb_connection *out, xb_error *err)
{
    unsigned char craw[16], sraw[16];
    int family, cport, sport;
    unsigned long scope;

    if (xb_connection_ends(client, server, out, &family, craw, &cport, sraw, &sport, &scope,
                           err) != 0)
        return -1;
    if (conn_diag_one(family, craw, cport, sraw, sport, scope, out, err) != 0)
        return -1;
    if (out->state != XB_CONN_NONE && out->server.inode != 0 &&
        (flags & XB_OWNER_NO_PROCESSES) == 0 && conn_holders(pid, &out->server, err) != 0) {
        xb_connection_init(out);
        return -1;
    }
    return 0;
}

/* --- issue 13: bound placeholders, process start times ------------------ */

int xb_owner_bound(int port, unsigned flags, xb_listeners *out, xb_error *err)
{
    return owner_dump(port, XB_TCP_BOUND_INACTIVE, flags, out, err);
}

int xb_owner_bound_visible(void)
{
    struct utsname u;
    char *end;
    long major, minor;

    if (uname(&u) != 0)
        return 0;
    errno = 0;
    major = strtol(u.release, &end, 10);
    if (errno != 0 || end == u.release || *end != '.')
        return 0;
    minor = strtol(end + 1, &end, 10);
    if (errno != 0)
        return 0;
    return major > 6 || (major == 6 && minor >= 6);
}

/* The whole of a small /proc file into buf (NUL-terminated); -1 with errno. */
static int read_small(const char *path, char *buf, size_t len)
{
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    while (got < len - 1) {
        ssize_t n = read(fd, buf + got, len - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            (void)close(fd);
            errno = e;
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    if (close(fd) != 0)
        return -1;
    return 0;
}

static int boot_time(long long *out, xb_error *err)
{
    /* /proc/stat is a few KiB per CPU: read it line by line. */
    char line[256];
    FILE *f = fopen("/proc/stat", "re");

    if (f == NULL)
        return xb_fail(err, XB_STAGE_OWNER, errno, "open(/proc/stat)");
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "btime ", 6) == 0) {
            char *end;
            errno = 0;
            long long v = strtoll(line + 6, &end, 10);
            (void)fclose(f);
            if (errno != 0 || end == line + 6 || v <= 0)
                return xb_fail(err, XB_STAGE_OWNER, EBADMSG, "/proc/stat: bad btime line");
            *out = v;
            return 0;
        }
    }
    (void)fclose(f);
    return xb_fail(err, XB_STAGE_OWNER, EBADMSG, "/proc/stat has no btime line");
}

int xb_process_start_time(long pid, double *out, xb_error *err)
{
    char path[64], stat[1024];
    const char *p;
    unsigned long long start;
    long long btime;
    long ticks;
    int field;

    if (out == NULL)
        return xb_fail(err, XB_STAGE_OWNER, EINVAL, "xb_process_start_time");
    *out = 0.0;
    if (pid <= 0)
        return xb_fail(err, XB_STAGE_OWNER, ESRCH, "no such process");
    if (snprintf(path, sizeof(path), "/proc/%ld/stat", pid) >= (int)sizeof(path))
        return xb_fail(err, XB_STAGE_OWNER, ENAMETOOLONG, "/proc/PID/stat");
    if (read_small(path, stat, sizeof(stat)) != 0)
        return xb_fail(err, XB_STAGE_OWNER, errno == ENOENT ? ESRCH : errno, "read(/proc/PID/stat)");
    /* "PID (COMM) STATE ..." -- COMM may hold spaces and ')': the fields start
     * after the last ')'.  starttime is field 22; STATE is field 3. */
    p = strrchr(stat, ')');
    if (p == NULL)
        return xb_fail(err, XB_STAGE_OWNER, EBADMSG, "/proc/PID/stat: no ')'");
    p++;
    for (field = 2; field < 21 && *p; field++) {
        while (*p == ' ')
            p++;
        while (*p && *p != ' ')
            p++;
    }
    if (field != 21 || *p != ' ')
        return xb_fail(err, XB_STAGE_OWNER, EBADMSG, "/proc/PID/stat: too few fields");
    {
        char *end;
        errno = 0;
        start = strtoull(p + 1, &end, 10);
        if (errno != 0 || end == p + 1)
            return xb_fail(err, XB_STAGE_OWNER, EBADMSG, "/proc/PID/stat: bad starttime");
    }
    ticks = sysconf(_SC_CLK_TCK);
    if (ticks <= 0)
        return xb_fail(err, XB_STAGE_OWNER, errno ? errno : EINVAL, "sysconf(_SC_CLK_TCK)");
    if (boot_time(&btime, err) != 0)
        return -1;
    *out = (double)start / (double)ticks + (double)btime;
    return 0;
}

int xb_owner_timewait(int port, size_t *count, xb_error *err)
{
    xb_listeners list = {NULL, 0, 0};
    unsigned char *buf;
    int rc;

    if (count == NULL)
        return xb_fail(err, XB_STAGE_OWNER, EINVAL, "xb_owner_timewait");
    *count = 0;
    if (port < 1 || port > 65535)
        return xb_fail(err, XB_STAGE_OWNER, EINVAL, "port out of range 1-65535");
    buf = (unsigned char *)malloc(XB_DIAG_BUFSIZE);
    if (buf == NULL)
        return xb_fail(err, XB_STAGE_OWNER, ENOMEM, "sock_diag buffer");
    rc = diag_dump(AF_INET, port, XB_TCP_TIME_WAIT, 0x74700014u, buf, &list, err);
    if (rc == 0)
        rc = diag_dump(AF_INET6, port, XB_TCP_TIME_WAIT, 0x74700016u, buf, &list, err);
    free(buf);
    if (rc == 0)
        *count = list.count;
    xb_listeners_free(&list);
    return rc;
}
