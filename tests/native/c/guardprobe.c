/*
 * guardprobe.c -- the guard socket and the self-probe at the C level, over
 * ext/xbind.h only.  Built natively (POSIX core) and with mingw-w64 (Winsock
 * core, run under Wine) by tests/test_guard_c.py.  No Python.
 *
 *   guardprobe guard|plain VICTIM_ADDR ATTACK_ADDR
 *
 * Binds VICTIM_ADDR:0 and does NOT listen: "guard" with xb_guard_open(),
 * "plain" the way Twisted makes its socket (POSIX: SO_REUSEADDR; Windows: no
 * option).  Not listening on purpose: under Wine a listening socket is
 * protected by the Linux kernel whatever the options, so only bind-time rules
 * show Windows' behaviour (docs: DESIGN.md section 5).  Then one fresh socket
 * per attacker option tries bind(ATTACK_ADDR:port) and is closed again;
 * prints "<option> <0 or the OS error code>" per line, then
 * "probe-bound <n>" = how many self-probe attempts of targets same/specific/
 * wildcard (the victim's own family) succeeded, each listed before as
 * "probe <target> <options> <address> [unavoidable]"; then "probe-fatal
 * <n>" = how many of those are not marked unavoidable.  (The other family's
 * targets are left out: a lone socket has no guard.)  Exit 0 unless setup failed.
 */
#ifndef _WIN32
#  ifndef _GNU_SOURCE
#    define _GNU_SOURCE 1
#  endif
#endif
#include "xbind.h"

#include <stdio.h>
#include <string.h>

static int attack(const xb_addr *where, int family, int level, int name, int use_option)
{
    xb_sock s = XB_BADSOCK;
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    int code = 0;

    if (xb_socket_raw(family, &s, &err) != 0)
        return err.code ? err.code : -1;
    if (family == AF_INET6 && xb_socket_setopt(s, IPPROTO_IPV6, IPV6_V6ONLY, 1, "v6only", &err) != 0)
        code = err.code;
    else if (use_option && xb_socket_setopt(s, level, name, 1, "option", &err) != 0)
        code = err.code;
    else if (xb_socket_bind(s, where, &err) != 0)
        code = err.code;
    (void)xb_close(s);
    return code;
}

int main(int argc, char **argv)
{
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    xb_addr vaddr, name, aaddr;
    xb_sock victim = XB_BADSOCK;
    xb_probe_result results[XB_PROBE_MAX];
    size_t count = 0, i;
    int port, family, bound = 0, fatal = 0;

    if (argc != 4 || (strcmp(argv[1], "guard") != 0 && strcmp(argv[1], "plain") != 0)) {
        fprintf(stderr, "usage: guardprobe guard|plain VICTIM_ADDR ATTACK_ADDR\n");
        return 2;
    }
    if (xb_startup(&err) != 0 || xb_addr_parse(argv[2], 0, AF_UNSPEC, &vaddr, &err) != 0) {
        fprintf(stderr, "setup failed: %s %d\n", err.detail ? err.detail : "?", err.code);
        return 2;
    }
    family = xb_addr_family(&vaddr);
    if (strcmp(argv[1], "guard") == 0) {
        if (xb_guard_open(&vaddr, &victim, &err) != 0) {
            fprintf(stderr, "guard failed: %s %d\n", err.detail, err.code);
            return 2;
        }
    } else {
        if (xb_socket_raw(family, &victim, &err) != 0 ||
            (family == AF_INET6 &&
             xb_socket_setopt(victim, IPPROTO_IPV6, IPV6_V6ONLY, 1, "v6only", &err) != 0) ||
#ifndef _WIN32
            xb_socket_setopt(victim, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR", &err) != 0 ||
#endif
            xb_socket_bind(victim, &vaddr, &err) != 0) {
            fprintf(stderr, "plain victim failed: %s %d\n", err.detail ? err.detail : "?", err.code);
            return 2;
        }
    }
    if (xb_socket_name(victim, &name, &err) != 0) {
        fprintf(stderr, "getsockname failed: %d\n", err.code);
        return 2;
    }
    port = xb_addr_port(&name);
    if (xb_addr_parse(argv[3], port, family, &aaddr, &err) != 0) {
        fprintf(stderr, "attack address: %s\n", err.detail);
        return 2;
    }
    printf("port %d\n", port);
    printf("none %d\n", attack(&aaddr, family, SOL_SOCKET, SO_REUSEADDR, 0));
    printf("SO_REUSEADDR %d\n", attack(&aaddr, family, SOL_SOCKET, SO_REUSEADDR, 1));
#ifdef _WIN32
    printf("SO_EXCLUSIVEADDRUSE %d\n", attack(&aaddr, family, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1));
#endif
#ifdef SO_REUSEPORT
    printf("SO_REUSEPORT %d\n", attack(&aaddr, family, SOL_SOCKET, SO_REUSEPORT, 1));
#endif
    if (xb_probe(victim, results, XB_PROBE_MAX, &count, &err) != 0) {
        fprintf(stderr, "probe failed: %d\n", err.code);
        return 2;
    }
    for (i = 0; i < count; i++) {
        if (results[i].outcome == XB_PROBE_BOUND &&
            (results[i].target == XB_PT_SAME || results[i].target == XB_PT_SPECIFIC ||
             results[i].target == XB_PT_WILDCARD))
        {
            char opts[96], where[XB_ADDRSTRLEN];
            bound++;
            if (!results[i].unavoidable)
                fatal++;
            if (xb_addr_format(&results[i].addr, where, sizeof(where)) != 0)
                where[0] = '\0';
            printf("probe %s %s %s%s\n", xb_probe_target_name(results[i].target),
                   xb_probe_options_text(results[i].options, opts, sizeof(opts)), where,
                   results[i].unavoidable ? " unavoidable" : "");
        }
    }
    printf("probe-attempts %d\n", (int)count);
    printf("probe-bound %d\n", bound);
    printf("probe-fatal %d\n", fatal);
    (void)xb_close(victim);
    return 0;
}
