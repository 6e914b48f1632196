/*
 * xbind.h -- the C API of twisted-patch's exclusive-bind core.
 *
 * Plain C11, no Python.  One implementation file per platform
 * (xbind_posix.c, xbind_win32.c) provides everything declared here; the
 * CPython binding (module.c) and the C tests (tests/native/c/) only use this header.
 *
 * Conventions:
 *   - every function that can fail returns 0 on success and -1 on failure,
 *     and fills the caller's xb_error with the stage that failed, the OS
 *     error code (errno on POSIX, WSAGetLastError() on Windows) and a static
 *     string naming the call or option ("bind", "SO_EXCLUSIVEADDRUSE", ...);
 *   - on failure nothing is left open: a function that created a socket
 *     closes it before returning -1;
 *   - no function allocates memory unless documented.
 */
#ifndef TWISTED_PATCH_XBIND_H
#define TWISTED_PATCH_XBIND_H

#include <stddef.h>

#ifdef _WIN32
#  ifndef _WIN32_WINNT
#    define _WIN32_WINNT 0x0600 /* Vista+: inet_pton, WSAPoll; older Windows is not supported */
#  endif
#  ifndef WIN32_LEAN_AND_MEAN
#    define WIN32_LEAN_AND_MEAN
#  endif
#  include <winsock2.h>
#  include <ws2tcpip.h>
/* Older mingw-w64 headers lack it; the value is Microsoft's (winsock2.h). */
#  ifndef SO_EXCLUSIVEADDRUSE
#    define SO_EXCLUSIVEADDRUSE ((int)(~SO_REUSEADDR))
#  endif
typedef SOCKET xb_sock;
#  define XB_BADSOCK INVALID_SOCKET
typedef int xb_socklen;
#else
#  include <sys/types.h>
#  include <sys/socket.h>
#  include <netinet/in.h>
typedef int xb_sock;
#  define XB_BADSOCK (-1)
typedef socklen_t xb_socklen;
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Where a failure happened.  Values are stable: module.c exposes the names. */
typedef enum xb_stage {
    XB_STAGE_NONE = 0,
    XB_STAGE_ADDRESS,  /* the address or port given by the caller is not valid */
    XB_STAGE_INIT,     /* WSAStartup (Windows only) */
    XB_STAGE_SOCKET,   /* socket() / WSASocketW() */
    XB_STAGE_OPTION,   /* setsockopt/getsockopt/fcntl/ioctlsocket; detail names it */
    XB_STAGE_BIND,     /* bind() */
    XB_STAGE_LISTEN,   /* listen() */
    XB_STAGE_NAME,     /* getsockname() */
    XB_STAGE_OWNER,    /* owner lookup (see the owner section below) */
    XB_STAGE_COUNT
} xb_stage;

typedef struct xb_error {
    xb_stage stage;
    int code;           /* errno / WSA error; for XB_STAGE_ADDRESS an errno-style code (EINVAL, EAFNOSUPPORT) */
    const char *detail; /* static string: the call or option that failed; never NULL after a failure */
} xb_error;

/* The one way the core reports a failure: fill *err (when not NULL) and
 * return -1, so that `return xb_fail(err, ...);` ends a failing function. */
static inline int xb_fail(xb_error *err, xb_stage stage, int code, const char *detail)
{
    if (err) {
        err->stage = stage;
        err->code = code;
        err->detail = detail;
    }
    return -1;
}

/* A socket address, family-independent. */
typedef struct xb_addr {
    struct sockaddr_storage ss;
    xb_socklen len;
} xb_addr;

/* Text buffer size for xb_addr_format(): "[" v6 "%" scope "]:" port. */
#define XB_ADDRSTRLEN 96

/* Name of a stage ("socket", "option", "bind", ...). Never NULL. */
const char *xb_stage_name(xb_stage stage);

/* The OS error text for a code returned in xb_error.code, written into buf
 * (always NUL-terminated when len > 0).  Returns buf. */
char *xb_strerror(int code, char *buf, size_t len);

/*
 * Parse a numeric host address (no DNS, ever) and a port into *out.
 * family: AF_UNSPEC picks the family from the literal; AF_INET / AF_INET6
 * require it.  host NULL or "" means the wildcard of `family` (AF_UNSPEC:
 * IPv4).  port must be 0..65535.  IPv6 scope ids ("fe80::1%eth0") are
 * accepted.  Fails with XB_STAGE_ADDRESS.
 */
int xb_addr_parse(const char *host, long port, int family, xb_addr *out, xb_error *err);

/* "127.0.0.1:80" or "[::1]:80" into buf (XB_ADDRSTRLEN bytes is always enough).
 * Returns 0, or -1 if the family is unknown or buf too small. */
int xb_addr_format(const xb_addr *addr, char *buf, size_t len);

/* Family and port of an address (port in host byte order, -1 if unknown family). */
int xb_addr_family(const xb_addr *addr);
int xb_addr_port(const xb_addr *addr);

/* One-time process setup (WSAStartup on Windows; nothing on POSIX). Idempotent. */
int xb_startup(xb_error *err);

/*
 * Create a TCP socket of `family` for listening, hardened:
 *   - non-inheritable and non-blocking from the start (SOCK_CLOEXEC|SOCK_NONBLOCK,
 *     or fcntl right after socket() where those flags do not exist;
 *     WSA_FLAG_OVERLAPPED|WSA_FLAG_NO_HANDLE_INHERIT and FIONBIO on Windows);
 *   - IPV6_V6ONLY=1 on AF_INET6;
 *   - Windows: SO_EXCLUSIVEADDRUSE=1, never SO_REUSEADDR;
 *     POSIX: SO_REUSEADDR=1 (restart past TIME_WAIT), never SO_REUSEPORT.
 */
int xb_socket_open(int family, xb_sock *out, xb_error *err);

/* bind() with the error mapped to XB_STAGE_BIND.  Does not close on failure. */
int xb_socket_bind(xb_sock s, const xb_addr *addr, xb_error *err);

/* listen(); backlog must be >= 0 (0 < backlog is clamped by the OS). Does not close. */
int xb_socket_listen(xb_sock s, int backlog, xb_error *err);

/* The socket's local address (getsockname). */
int xb_socket_name(xb_sock s, xb_addr *out, xb_error *err);

/* open + bind + listen; on failure the socket is closed and *out is XB_BADSOCK. */
int xb_listen(const xb_addr *addr, int backlog, xb_sock *out, xb_error *err);

/* Close a socket (closesocket on Windows). Returns 0 or -1 (errno / WSA error kept). */
int xb_close(xb_sock s);

/* What a socket's protective options read back as (getsockopt/fcntl). */
typedef struct xb_sockopts {
    int reuseaddr;         /* SO_REUSEADDR */
    int reuseport;         /* SO_REUSEPORT, -1 where the OS has none */
    int exclusiveaddruse;  /* SO_EXCLUSIVEADDRUSE, -1 where the OS has none */
    int v6only;            /* IPV6_V6ONLY, -1 for non-IPv6 sockets */
    int inheritable;       /* 1 if a child process would inherit it */
    int nonblocking;       /* 1 if non-blocking (-1 where unknowable: Windows) */
    int listening;         /* SO_ACCEPTCONN, -1 where unknown */
} xb_sockopts;

int xb_socket_options(xb_sock s, xb_sockopts *out, xb_error *err);

/* The last OS socket error (errno / WSAGetLastError()). */
int xb_last_error(void);

/* --- owner lookup -----------------------------------------------------
 *
 * Who listens on a TCP port: one implementation file per OS
 * (owner_linux.c, owner_win32.c, owner_darwin.c, owner_none.c).
 *
 * xb_owner_listeners() returns every TCP socket in the LISTEN state whose
 * local port is `port`, in both families, wildcard and specific addresses
 * alike (choosing the ones that would receive a given connection is the
 * caller's business: twisted_patch/owner.py).  Failures use XB_STAGE_OWNER
 * with an errno / Win32 error code and a static detail naming the call.
 *
 * What can be known differs per OS (docs/owner.rst):
 *   - Linux: NETLINK_SOCK_DIAG gives every listener with its uid and socket
 *     inode, whoever owns it; pids come from our own descriptors and from
 *     /proc/PID/fd of the processes of the listeners' uids and of ours,
 *     which only shows the processes we may inspect (all of them as root).
 *   - Windows: GetExtendedTcpTable gives every listener with its pid; the
 *     user comes from the process token (may be denied); no uid (-1).
 *   - macOS: libproc walks the processes we may inspect; listeners of other
 *     users' processes are invisible without root.
 */

#define XB_OWNER_MAXPIDS 16   /* processes reported per listener (more: pids_truncated) */
#define XB_OWNER_NAMELEN 64   /* process name, UTF-8, NUL-terminated, truncated if longer */
#define XB_OWNER_USERLEN 128  /* user name ("alice", "DOMAIN\\alice"), "" if unknown */

typedef struct xb_listener {
    int family;                      /* AF_INET or AF_INET6 */
    char host[XB_ADDRSTRLEN];        /* numeric local address, no brackets ("::1", "0.0.0.0") */
    int port;                        /* local port, host byte order */
    long long uid;                   /* owning uid, -1 if unknown (always -1 on Windows) */
    char user[XB_OWNER_USERLEN];     /* owning user name, "" if unknown */
    unsigned long long inode;        /* Linux: socket inode; macOS: kernel socket id; Windows: 0 */
    unsigned long long cookie;       /* Linux: the socket's cookie (SO_COOKIE, sock_diag), 0 if
                                        unknown; 0 elsewhere */
    int v6only;                      /* IPV6_V6ONLY of an AF_INET6 listener: 1, 0, or -1 unknown;
                                        -1 for AF_INET */
    int npids;                       /* entries used in pids[] and names[] */
    int pids_truncated;              /* 1 if more processes hold the socket than fit */
    long pids[XB_OWNER_MAXPIDS];     /* processes holding the socket (may be 0 of them) */
    char names[XB_OWNER_MAXPIDS][XB_OWNER_NAMELEN]; /* their names, "" if unknown */
} xb_listener;

/* A growable array of listeners; zero-initialise, release with xb_listeners_free(). */
typedef struct xb_listeners {
    xb_listener *items;
    size_t count;
    size_t cap;
} xb_listeners;

/* Which implementation was compiled in: "linux", "win32", "darwin" or "none". */
extern const char xb_owner_backend[];

/* Flags of xb_owner_listeners(). */
#define XB_OWNER_SELF_ONLY 1u /* Linux: look for holding processes only in our own
                                 process (no walk of other processes' /proc/PID/fd;
                                 other listeners then have no pids).  Ignored where
                                 the listeners themselves are found by walking the
                                 processes (macOS) or come with their pid (Windows). */
#define XB_OWNER_NO_PROCESSES 2u /* Linux: no search for holding processes at all
                                    (no pids, no names; inode and uid still given):
                                    the post-listen check compares inodes.  Ignored
                                    where pids come with the listeners. */
#define XB_OWNER_ALL_PROCESSES 4u /* Linux: walk every process we may inspect, not only
                                     those of the listeners' uids and our own (a socket
                                     handed to a process of a third uid is then found
                                     too; see owner_linux.c).  Ignored elsewhere. */

/*
 * Every TCP listener on `port` (1..65535), both families.  *out must be
 * zero-initialised (or freed) by the caller; on success it holds the
 * listeners (count may be 0), on failure it is empty and freed.
 * The "none" implementation always fails with code ENOSYS and the detail
 * "owner lookup is not supported on this OS".
 */
int xb_owner_listeners(int port, unsigned flags, xb_listeners *out, xb_error *err);

/* The uid (-1 if the OS has none) and user name of a process. */
int xb_owner_process_user(long pid, long long *uid, char *user, size_t userlen, xb_error *err);

#ifndef _WIN32
/* owner_posix.c (Linux and macOS backends): the user name of a uid into
 * user[0..len) ("" when the uid has no name or is negative).  Fails only when
 * memory runs out (XB_STAGE_OWNER, ENOMEM). */
int xb_owner_user_name(long long uid, char *user, size_t len, xb_error *err);
/* The user name of every listener in the list, each uid looked up once. */
int xb_owner_fill_users(xb_listeners *list, xb_error *err);
#endif

/* Release the items of a list and reset it to empty.  NULL-safe, idempotent. */
void xb_listeners_free(xb_listeners *list);

/* Append a zeroed listener (family 0, uid -1, v6only -1) and return it, or
 * NULL when memory runs out (the list is left as it was). */
xb_listener *xb_listeners_add(xb_listeners *list);

#ifdef __linux__
/*
 * The pure part of the Linux lookup, separate so that it can be fuzzed:
 * parse one buffer of NETLINK_SOCK_DIAG replies (as received by one recv())
 * to a dump request with sequence number `seq`, and append to *out every
 * AF_INET/AF_INET6 TCP_LISTEN entry whose local port is `port` (entries for
 * other ports or states are skipped: the kernel filter is trusted but
 * checked; port < 0 keeps every port, for tests and fuzzing).  Fills family, host, port, uid, inode and v6only; nothing else.
 *
 * Returns 1 when the dump is complete (NLMSG_DONE seen), 0 when more
 * buffers are to come, -1 on a malformed buffer (EBADMSG), a kernel error
 * reply (its errno) or ENOMEM; on -1 the entries appended by this call may
 * remain in *out (the caller frees the list).  Never reads outside
 * buf[0..len).
 */
int xb_owner_parse_diag(const void *buf, size_t len, unsigned int seq, int port,
                        xb_listeners *out, xb_error *err);
#endif

/* --- issue 13: bound placeholders and process identity ------------------- */

/*
 * Every TCP socket on `port` that is bound and neither listening nor
 * connected, both families: a placeholder that can listen() the moment the
 * address is free.  Same list, flags and ownership rules as
 * xb_owner_listeners().  Linux 6.6 and later (sock_diag state
 * TCP_BOUND_INACTIVE); an older Linux kernel does not dump such sockets and
 * the list is then empty (xb_owner_bound_visible() says which).  Other OSes:
 * ENOSYS.
 */
int xb_owner_bound(int port, unsigned flags, xb_listeners *out, xb_error *err);

/* 1 if this kernel reports bound, non-listening sockets (Linux >= 6.6), else 0. */
int xb_owner_bound_visible(void);

/*
 * When process `pid` started, in seconds since the Unix epoch, computed the
 * way psutil's Process.create_time() does (Tahoe-LAFS writes that value to
 * running.process): Linux /proc/PID/stat starttime / CLK_TCK + /proc/stat
 * btime; Windows GetProcessTimes(); macOS proc_pidinfo(PROC_PIDTBSDINFO).
 * ESRCH (Windows: ERROR_INVALID_PARAMETER) if there is no such process.
 */
int xb_process_start_time(long pid, double *out, xb_error *err);

/*
 * xb_listen() with flags.  XB_LISTEN_STRICT_BIND (POSIX; ignored on Windows,
 * where SO_REUSEADDR is never set): bind without SO_REUSEADDR -- so that the
 * bind fails beside any socket already bound on an overlapping address, even
 * one that set SO_REUSEADDR and does not listen (a placeholder) -- and set it
 * only once listening.  A bind that fails this way because of TIME_WAIT
 * entries is for the caller to retry with xb_listen().
 */
#define XB_LISTEN_STRICT_BIND 1u
int xb_listen_ex(const xb_addr *addr, int backlog, unsigned flags, xb_sock *out, xb_error *err);

/* How many TIME_WAIT entries have local port `port`, both families (Linux;
 * elsewhere ENOSYS). */
int xb_owner_timewait(int port, size_t *count, xb_error *err);

/*
 * Stop a listening socket listening and keep its bind: the socket becomes a
 * guard (bound, not listening, connections refused, nobody can bind over it).
 * Linux: SO_REUSEADDR is cleared first (measured on 6.18: a bound socket that
 * keeps SO_REUSEADDR lets any uid bind the same address with SO_REUSEADDR and
 * listen on it), then shutdown(SHUT_RD) takes it out of the listening state
 * (the connections waiting in its backlog are reset) and SO_ACCEPTCONN is
 * checked to be 0.  Fails with the OS's code where a listening socket cannot
 * stop listening (the BSDs and macOS: ENOTCONN from shutdown(); Windows:
 * WSAEOPNOTSUPP without trying): the socket then still listens, still bound,
 * with SO_REUSEADDR cleared, and the caller must keep it open.  Never call it
 * on a socket bound to port 0 (the OS chose the number): Linux then releases
 * the port at shutdown(), silently -- getsockname() still shows it (measured).
 */
int xb_socket_unlisten(xb_sock s, xb_error *err);

/* --- address-family guard ----------------------------------------------- */

/*
 * A guard: a socket bound to addr and NOT listening, that nobody else can
 * bind over.  Non-inheritable and non-blocking from creation (as
 * xb_socket_open), IPV6_V6ONLY=1 on AF_INET6, and never SO_REUSEADDR nor
 * SO_REUSEPORT: on Linux and the BSDs a later bind of the same address (or
 * of an overlapping wildcard/specific one) conflicts with it whatever
 * options the later socket sets, and connections to it are refused.
 * Windows: SO_EXCLUSIVEADDRUSE=1 (a bound socket without it does not stop a
 * same-user SO_REUSEADDR bind).  listen() may be called on it later (the
 * guard is then taken over by a listener of this process).
 * On failure the socket is closed and *out is XB_BADSOCK.
 */
int xb_guard_open(const xb_addr *addr, xb_sock *out, xb_error *err);

/*
 * A plain TCP socket of `family` for the self-probe: non-inheritable,
 * blocking, no option set.  On failure *out is XB_BADSOCK.
 */
int xb_socket_raw(int family, xb_sock *out, xb_error *err);

/* setsockopt(level, name, int value); detail = what. Does not close. */
int xb_socket_setopt(xb_sock s, int level, int name, int value, const char *what, xb_error *err);

/* --- self-probe (probe.c) ------------------------------------------------ */

/* Which address an attempt binds, relative to the listening socket's own. */
typedef enum xb_probe_target {
    XB_PT_SAME = 0,      /* our exact address */
    XB_PT_SPECIFIC,      /* the loopback address of our family, over our wildcard */
    XB_PT_WILDCARD,      /* the wildcard of our family, over our specific address */
    XB_PT_SIBLING,       /* the sibling address: 127.0.0.1<->::1, 0.0.0.0<->[::] (v6-only) */
    XB_PT_SIBLING_OTHER, /* the sibling family's other overlap: [::] for 127.0.0.1, [::1] for 0.0.0.0 ... */
    XB_PT_DUALSTACK,     /* a dual-stack [::] socket (IPV6_V6ONLY=0), covering both families */
    XB_PT_COUNT
} xb_probe_target;

/* Options an attempt sets before bind(); a bitmask. */
#define XB_PO_REUSEADDR        0x1u
#define XB_PO_REUSEPORT        0x2u  /* only where SO_REUSEPORT exists */
#define XB_PO_REUSEPORT_LB     0x4u  /* FreeBSD's SO_REUSEPORT_LB */
#define XB_PO_EXCLUSIVEADDRUSE 0x8u  /* Windows only */

typedef enum xb_probe_outcome {
    XB_PROBE_REFUSED = 0, /* bind failed with EADDRINUSE/EACCES: the port is protected */
    XB_PROBE_BOUND,       /* bind SUCCEEDED: an attacker could do the same (socket closed at once) */
    XB_PROBE_UNAVAILABLE, /* the family or address does not exist here (EAFNOSUPPORT, EADDRNOTAVAIL) */
    XB_PROBE_ERROR,       /* anything else (code says what); not a verdict */
    XB_PROBE_OUTCOME_COUNT
} xb_probe_outcome;

/* How an attempt's address relates to the bound address it collides with. */
#define XB_NEST_NONE 0                   /* the same address */
#define XB_NEST_SPECIFIC_OVER_WILDCARD 1 /* e.g. 127.0.0.1 over 0.0.0.0: takes that address's traffic */
#define XB_NEST_WILDCARD_OVER_SPECIFIC 2 /* e.g. 0.0.0.0 over 127.0.0.1: gets other addresses' traffic */

typedef struct xb_probe_result {
    xb_probe_target target;
    unsigned options;         /* XB_PO_* */
    xb_probe_outcome outcome;
    int code;                 /* errno / WSA error of the failing call, 0 when bound */
    const char *detail;       /* the failing call ("bind", "SO_REUSEPORT", "socket"), or "bind" */
    int nested;               /* XB_NEST_*: how the attempt's address overlaps the one it collides with */
    int unavoidable;          /* 1: this OS allows it whatever the server does (see xb_probe_unavoidable) */
    xb_addr addr;             /* the address the attempt bound or tried */
} xb_probe_result;

/* Upper bound on the number of attempts one probe makes. */
#define XB_PROBE_MAX 48

/*
 * Try, on fresh sockets of this process, the binds a same-user attacker
 * would try against the listening socket `listening` (any TCP socket bound
 * to an IPv4 or IPv6 address; the probe reads its address with
 * getsockname).  Every attempt's socket is closed before the next one; a
 * bind that succeeds is never followed by listen().  Results go to
 * out[0..*count-1] (cap entries; XB_PROBE_MAX is always enough).
 * Returns -1 only if the listening socket's address cannot be read.
 */
int xb_probe(xb_sock listening, xb_probe_result *out, size_t cap, size_t *count, xb_error *err);

/* 1 if this OS lets a same-uid process make this bind whatever options the
 * server sets (the per-platform table in probe.c), else 0.  nested: XB_NEST_*. */
int xb_probe_unavoidable(xb_probe_target target, unsigned options, int nested);

/* "same", "specific", ... / "refused", "bound", ... ; never NULL. */
const char *xb_probe_target_name(int target);
const char *xb_probe_outcome_name(int outcome);
/* "SO_REUSEADDR+SO_REUSEPORT" or "none" into buf. Returns buf. */
char *xb_probe_options_text(unsigned options, char *buf, size_t len);


/* --- the server end of a connection (verified connections) ---------------
 *
 * A client that is about to send secrets on an established TCP connection
 * asks who holds the *other* end: the socket whose local address is the
 * client's peer and whose remote address is the client's own address.
 *   - Linux: one NETLINK_SOCK_DIAG request for that exact 4-tuple (the
 *     kernel's own hash lookup, no dump), then /proc/PID/fd for its inode;
 *   - Windows: GetExtendedTcpTable(TCP_TABLE_OWNER_PID_CONNECTIONS), the row
 *     with that 4-tuple and its owning pid;
 *   - macOS: libproc, the process whose TCP socket has that 4-tuple.
 * The "none" implementation fails with ENOSYS.
 */

/* State of the server end, the same numbers on every OS. */
#define XB_CONN_NONE 0         /* no socket with that 4-tuple (or only a listener) */
#define XB_CONN_ESTABLISHED 1  /* established */
#define XB_CONN_SYN_RECEIVED 2 /* the server has not seen the end of the handshake yet */
#define XB_CONN_CLOSING 3      /* FIN_WAIT1/2, CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT, CLOSE */

typedef struct xb_connection {
    int state;          /* XB_CONN_* */
    int os_state;       /* the OS's own state number (Linux TCP_*, MIB_TCP_STATE_*, TSI_S_*), -1 none */
    xb_listener server; /* the server end: family/host/port are its local address (the client's
                           peer); uid (-1 unknown); user "" (POSIX: the caller maps the uid);
                           inode: Linux socket inode, 0 while the server has not accept()ed it,
                           macOS kernel socket id, Windows 0; pids/names: its holders */
} xb_connection;

/*
 * The server end of the TCP connection from `client` (the client socket's
 * local address, getsockname) to `server` (its peer, getpeername); both of
 * one family (IPv4-mapped IPv6 addresses are looked up as IPv4).
 * pid > 0: look for holding processes in that process first, and stop there
 * if it holds the socket (other holders are then not listed); otherwise, or
 * if it does not, every process we may inspect (Linux, macOS; Windows: the
 * owning pid comes with the row).  flags: XB_OWNER_NO_PROCESSES (Linux: no
 * search for holders; uid and inode only).  *out is filled on success, also
 * when nothing was found (state XB_CONN_NONE).
 */
int xb_owner_connection(const xb_addr *client, const xb_addr *server, long pid, unsigned flags,
                        xb_connection *out, xb_error *err);


/* owner_common.c: family (IPv4-mapped IPv6 is AF_INET), the raw address (4 or 16
 * bytes, the rest zero), port (host order) and IPv6 scope of an address.
 * Returns 0, or -1 for a family other than AF_INET/AF_INET6 (or a short address). */
int xb_addr_split(const xb_addr *addr, int *family, unsigned char raw[16], int *port,
                  unsigned long *scope);

/* owner_common.c: *out zeroed, state XB_CONN_NONE, os_state/uid/v6only -1. */
void xb_connection_init(xb_connection *out);

#ifdef _WIN32
/* Windows: the address family of a socket, bound or not (SO_PROTOCOL_INFOW; an unbound
 * socket has no name for getsockname to give). */
int xb_socket_family(xb_sock s, int *family, xb_error *err);
#endif

#ifdef __cplusplus
}
#endif

#endif /* TWISTED_PATCH_XBIND_H */
