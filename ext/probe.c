/*
 * probe.c -- the self-probe, portable over xbind.h.
 *
 * After a port listens, try from fresh sockets of this very process the
 * binds a same-user attacker would try.  A bind that succeeds means an
 * attacker could do the same: the port is hijackable (or shadowable).
 *
 * Rules the probe keeps, whatever happens:
 *   - one socket at a time, closed before the next attempt (also after a
 *     failure), so the probe never leaves a socket open;
 *   - a bind that succeeds is never followed by listen(): a bound socket
 *     that does not listen receives no connections on Linux and Windows, so
 *     the probe never takes the port (or any of its traffic) from us.  (On
 *     the BSDs a bound, non-listening specific socket over our wildcard
 *     would answer a SYN for that address with a reset during the few
 *     microseconds it exists; those binds are the "unavoidable" ones below.)
 *   - the attempts run in a fixed order, so that a kernel state left by one
 *     (Linux caches SO_REUSEPORT state per port) shows up in the next one
 *     exactly as it would for an attacker making the same sequence.
 */
#if defined(__APPLE__)
#  ifndef _DARWIN_C_SOURCE
#    define _DARWIN_C_SOURCE 1 /* SO_REUSEPORT under -std=c11 */
#  endif
#elif !defined(_WIN32)
#  ifndef _GNU_SOURCE
#    define _GNU_SOURCE 1 /* SO_REUSEPORT, in6addr_* under -std=c11 on glibc */
#  endif
#endif
#include "xbind.h"

#include <errno.h>
#include <string.h>

#ifdef _WIN32
#  define XB_EADDRINUSE WSAEADDRINUSE
#  define XB_EACCES WSAEACCES
#  define XB_EADDRNOTAVAIL WSAEADDRNOTAVAIL
#  define XB_EAFNOSUPPORT WSAEAFNOSUPPORT
#  define XB_ENOPROTOOPT WSAENOPROTOOPT
#  define XB_EPROTONOSUPPORT WSAEPROTONOSUPPORT
#  define XB_EINVAL WSAEINVAL
#else
#  define XB_EADDRINUSE EADDRINUSE
#  define XB_EACCES EACCES
#  define XB_EADDRNOTAVAIL EADDRNOTAVAIL
#  define XB_EAFNOSUPPORT EAFNOSUPPORT
#  define XB_ENOPROTOOPT ENOPROTOOPT
#  define XB_EPROTONOSUPPORT EPROTONOSUPPORT
#  define XB_EINVAL EINVAL
#endif

/*
 * The per-platform table of attacks the OS allows to a same-uid process
 * whatever options the server sets.
 *
 * Linux (measured, tests/test_probe.py): none.  Once our socket listens (or,
 * for a guard, is bound without SO_REUSEADDR/SO_REUSEPORT), every
 * overlapping bind by any uid with any option is refused.
 *
 * macOS and the BSDs (read from the sources: FreeBSD sys/netinet/in_pcb.c
 * in_pcbbind_setup() and sys/netinet6/in6_pcb.c in6_pcbbind(), XNU
 * bsd/netinet/in_pcb.c in_pcbbind(); not measured here): a socket with
 * SO_REUSEADDR (or SO_REUSEPORT) looks up only *exact* address matches, and
 * the wildcard lookup that refuses overlaps is made only against other uids.
 * So the same uid may bind a different address that overlaps ours -- a
 * specific one over our wildcard, or a wildcard over our specific one --
 * whenever it sets SO_REUSEADDR or SO_REUSEPORT.  The only remedy is to
 * listen on the specific address itself.
 *
 * Windows (Microsoft's bind table, "Sharing Transport Addresses", and Wine,
 * tests/test_guard_c.py): SO_EXCLUSIVEADDRUSE on our socket (and on the
 * guard) refuses every later bind of our address and of any specific address
 * inside our wildcard -- but a *wildcard* bind over our specific address
 * succeeds for the same user with no option or SO_REUSEADDR.  Such a socket
 * receives only traffic for other addresses (the specific binding wins).
 */
int xb_probe_unavoidable(xb_probe_target target, unsigned options, int nested)
{
#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__NetBSD__) || \
    defined(__OpenBSD__) || defined(__DragonFly__)
    (void)target;
    return nested != XB_NEST_NONE &&
           (options & (XB_PO_REUSEADDR | XB_PO_REUSEPORT | XB_PO_REUSEPORT_LB)) != 0;
#elif defined(_WIN32)
    (void)target;
    return nested == XB_NEST_WILDCARD_OVER_SPECIFIC && (options & XB_PO_EXCLUSIVEADDRUSE) == 0;
#else
    (void)target;
    (void)options;
    (void)nested;
    return 0;
#endif
}

const char *xb_probe_target_name(int target)
{
    switch (target) {
    case XB_PT_SAME: return "same";
    case XB_PT_SPECIFIC: return "specific";
    case XB_PT_WILDCARD: return "wildcard";
    case XB_PT_SIBLING: return "sibling";
    case XB_PT_SIBLING_OTHER: return "sibling-other";
    case XB_PT_DUALSTACK: return "dualstack";
    default: return "unknown";
    }
}

const char *xb_probe_outcome_name(int outcome)
{
    switch (outcome) {
    case XB_PROBE_REFUSED: return "refused";
    case XB_PROBE_BOUND: return "bound";
    case XB_PROBE_UNAVAILABLE: return "unavailable";
    case XB_PROBE_ERROR: return "error";
    default: return "unknown";
    }
}

static void append(char *buf, size_t len, size_t *used, const char *text)
{
    size_t n = strlen(text);
    if (*used + n + 1 > len)
        return;
    memcpy(buf + *used, text, n + 1);
    *used += n;
}

char *xb_probe_options_text(unsigned options, char *buf, size_t len)
{
    static const struct { unsigned bit; const char *name; } names[] = {
        {XB_PO_REUSEADDR, "SO_REUSEADDR"},
        {XB_PO_REUSEPORT, "SO_REUSEPORT"},
        {XB_PO_REUSEPORT_LB, "SO_REUSEPORT_LB"},
        {XB_PO_EXCLUSIVEADDRUSE, "SO_EXCLUSIVEADDRUSE"},
    };
    size_t used = 0, i;

    if (buf == NULL || len == 0)
        return buf;
    buf[0] = '\0';
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (options & names[i].bit) {
            if (used > 0)
                append(buf, len, &used, "+");
            append(buf, len, &used, names[i].name);
        }
    }
    if (used == 0)
        append(buf, len, &used, "none");
    return buf;
}

/* --- addresses -------------------------------------------------------------- */

static int is_wildcard(const xb_addr *a)
{
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;
        return sin->sin_addr.s_addr == htonl(INADDR_ANY);
    }
    if (a->ss.ss_family == AF_INET6) {
        static const unsigned char zero[16] = {0};
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;
        return memcmp(&sin6->sin6_addr, zero, 16) == 0;
    }
    return 0;
}

static int is_loopback(const xb_addr *a)
{
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;
        return sin->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
    }
    if (a->ss.ss_family == AF_INET6) {
        static const unsigned char one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;
        return memcmp(&sin6->sin6_addr, one, 16) == 0;
    }
    return 0;
}

static int make_addr(int family, int loopback, int port, xb_addr *out)
{
    xb_error ignored;
    const char *host;
    if (family == AF_INET6)
        host = loopback ? "::1" : "::";
    else
        host = loopback ? "127.0.0.1" : "0.0.0.0";
    return xb_addr_parse(host, port, family, out, &ignored);
}

/* --- one attempt -------------------------------------------------------------- */

static int is_refusal(int code)
{
    return code == XB_EADDRINUSE || code == XB_EACCES;
}

static int is_unavailable(int code)
{
    return code == XB_EADDRNOTAVAIL || code == XB_EAFNOSUPPORT ||
           code == XB_EPROTONOSUPPORT || code == XB_ENOPROTOOPT;
}

static void attempt(xb_probe_result *r, int v6only)
{
    xb_sock s = XB_BADSOCK;
    xb_error e = {XB_STAGE_NONE, 0, NULL};
    int family = xb_addr_family(&r->addr);

    r->outcome = XB_PROBE_ERROR;
    r->code = 0;
    r->detail = "bind";
    if (xb_socket_raw(family, &s, &e) != 0)
        goto failed;
    if (family == AF_INET6 &&
        xb_socket_setopt(s, IPPROTO_IPV6, IPV6_V6ONLY, v6only, "IPV6_V6ONLY", &e) != 0)
        goto failed;
    if ((r->options & XB_PO_REUSEADDR) &&
        xb_socket_setopt(s, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR", &e) != 0)
        goto failed;
#ifdef SO_REUSEPORT
    if ((r->options & XB_PO_REUSEPORT) &&
        xb_socket_setopt(s, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT", &e) != 0)
        goto failed;
#endif
#ifdef SO_REUSEPORT_LB
    if ((r->options & XB_PO_REUSEPORT_LB) &&
        xb_socket_setopt(s, SOL_SOCKET, SO_REUSEPORT_LB, 1, "SO_REUSEPORT_LB", &e) != 0)
        goto failed;
#endif
#ifdef _WIN32
    if ((r->options & XB_PO_EXCLUSIVEADDRUSE) &&
        xb_socket_setopt(s, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1, "SO_EXCLUSIVEADDRUSE", &e) != 0)
        goto failed;
#endif
    if (xb_socket_bind(s, &r->addr, &e) != 0)
        goto failed;
    /* Bound: an attacker could do this.  Never listen; close at once. */
    (void)xb_close(s);
    r->outcome = XB_PROBE_BOUND;
    return;

failed:
    if (s != XB_BADSOCK)
        (void)xb_close(s);
    r->code = e.code;
    r->detail = e.detail ? e.detail : "bind";
    if (e.stage == XB_STAGE_BIND && is_refusal(e.code))
        r->outcome = XB_PROBE_REFUSED;
    else if (is_unavailable(e.code))
        r->outcome = XB_PROBE_UNAVAILABLE;
    else
        r->outcome = XB_PROBE_ERROR;
}

/* --- the probe ------------------------------------------------------------------ */

typedef struct target_spec {
    xb_probe_target target;
    xb_addr addr;
    int v6only;
    int nested;
} target_spec;

int xb_probe(xb_sock listening, xb_probe_result *out, size_t cap, size_t *count, xb_error *err)
{
    static const unsigned option_sets[] = {
        0u,
        XB_PO_REUSEADDR,
#ifdef SO_REUSEPORT
        XB_PO_REUSEPORT,
        XB_PO_REUSEADDR | XB_PO_REUSEPORT,
#endif
#ifdef SO_REUSEPORT_LB
        XB_PO_REUSEPORT_LB,
#endif
#ifdef _WIN32
        XB_PO_EXCLUSIVEADDRUSE,
#endif
    };
    target_spec targets[XB_PT_COUNT];
    size_t ntargets = 0, n = 0, i, j;
    xb_addr ours;
    int family, port, wild;

    if (count == NULL || (out == NULL && cap > 0)) {
        if (err) {
            err->stage = XB_STAGE_NAME;
            err->code = XB_EINVAL;
            err->detail = "no output buffer";
        }
        return -1;
    }
    *count = 0;
    if (xb_socket_name(listening, &ours, err) != 0)
        return -1;
    family = xb_addr_family(&ours);
    port = xb_addr_port(&ours);
    if ((family != AF_INET && family != AF_INET6) || port <= 0) {
        if (err) {
            err->stage = XB_STAGE_NAME;
            err->code = XB_EINVAL;
            err->detail = "the socket is not bound to an IPv4 or IPv6 address and port";
        }
        return -1;
    }
    wild = is_wildcard(&ours);

    /* our exact address */
    targets[ntargets].target = XB_PT_SAME;
    targets[ntargets].addr = ours;
    targets[ntargets].v6only = 1;
    targets[ntargets].nested = XB_NEST_NONE;
    ntargets++;
    /* an overlapping address of our family */
    if (make_addr(family, wild, port, &targets[ntargets].addr) == 0) {
        targets[ntargets].target = wild ? XB_PT_SPECIFIC : XB_PT_WILDCARD;
        targets[ntargets].v6only = 1;
        targets[ntargets].nested = wild ? XB_NEST_SPECIFIC_OVER_WILDCARD
                                        : XB_NEST_WILDCARD_OVER_SPECIFIC;
        ntargets++;
    }
    /* the other family: only 127.0.0.1, ::1 and the wildcards have a sibling */
    if (wild || is_loopback(&ours)) {
        int sibling_family = family == AF_INET ? AF_INET6 : AF_INET;
        if (make_addr(sibling_family, !wild, port, &targets[ntargets].addr) == 0) {
            targets[ntargets].target = XB_PT_SIBLING;
            targets[ntargets].v6only = 1;
            targets[ntargets].nested = XB_NEST_NONE;
            ntargets++;
        }
        if (make_addr(sibling_family, wild, port, &targets[ntargets].addr) == 0) {
            targets[ntargets].target = XB_PT_SIBLING_OTHER;
            targets[ntargets].v6only = 1;
            /* against the guard: [::1] inside a [::] guard, or [::] over a [::1] one */
            targets[ntargets].nested = wild ? XB_NEST_SPECIFIC_OVER_WILDCARD
                                            : XB_NEST_WILDCARD_OVER_SPECIFIC;
            ntargets++;
        }
    }
    /* a dual-stack [::] overlaps an IPv4 and an IPv6 address at once */
    if (make_addr(AF_INET6, 0, port, &targets[ntargets].addr) == 0) {
        targets[ntargets].target = XB_PT_DUALSTACK;
        targets[ntargets].v6only = 0;
        targets[ntargets].nested = wild ? XB_NEST_NONE : XB_NEST_WILDCARD_OVER_SPECIFIC;
        ntargets++;
    }

    for (i = 0; i < ntargets; i++) {
        for (j = 0; j < sizeof(option_sets) / sizeof(option_sets[0]); j++) {
            xb_probe_result r;
            memset(&r, 0, sizeof(r));
            r.target = targets[i].target;
            r.options = option_sets[j];
            r.addr = targets[i].addr;
            r.nested = targets[i].nested;
            attempt(&r, targets[i].v6only);
            r.unavoidable = r.outcome == XB_PROBE_BOUND &&
                            xb_probe_unavoidable(r.target, r.options, r.nested);
            if (n < cap)
                out[n] = r;
            n++;
        }
    }
    *count = n < cap ? n : cap;
    return 0;
}
