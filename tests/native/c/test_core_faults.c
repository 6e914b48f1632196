/*
 * test_core_faults.c -- every libc call of the core made to fail, with every
 * errno its man page lists, through the fault shim (tests/native/fault/xbfault.c,
 * linked into this program so it interposes on libc for the core's calls).
 *
 * Checks for each injected failure: the core returns -1, xb_error names the
 * right stage, carries the injected errno and a non-NULL detail, and no file
 * descriptor is left open (counted in /proc/self/fd before and after).
 * Under `valgrind --leak-check=full --error-exitcode=1` (make test-valgrind)
 * this also shows no memory is leaked or misused on any error path.
 *
 * Build: cc -std=c11 -Iext -Itests/native/fault tests/native/c/test_core_faults.c
 *        ext/addr.c ext/xbind_posix.c tests/native/fault/xbfault.c -ldl -lpthread
 * Exit status 0 when every check passes; one line per failed check.
 */
#define _GNU_SOURCE 1
#include "xbind.h"
#include "xbfault.h"

#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int failures, checks;

#define CHECK(cond, ...)                                                         \
    do {                                                                         \
        checks++;                                                                \
        if (!(cond)) {                                                           \
            failures++;                                                          \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                          \
            printf(__VA_ARGS__);                                                 \
            printf("\n");                                                        \
        }                                                                        \
    } while (0)

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

#define REPEAT 25 /* each case several times: a leak per failure shows up as a count */

struct errcase { const char *call; int err; };

static const int socket_errs[] = {EACCES, EAFNOSUPPORT, EINVAL, EMFILE, ENFILE, ENOBUFS, ENOMEM,
                                  EPROTONOSUPPORT, 0};
static const int sockopt_errs[] = {EBADF, EFAULT, EINVAL, ENOPROTOOPT, ENOTSOCK, 0};
static const int bind_errs[] = {EACCES, EADDRINUSE, EBADF, EINVAL, ENOTSOCK, EADDRNOTAVAIL,
                                EFAULT, ENOMEM, 0};
static const int listen_errs[] = {EADDRINUSE, EBADF, ENOTSOCK, EOPNOTSUPP, 0};
static const int getsockname_errs[] = {EBADF, EFAULT, EINVAL, ENOBUFS, ENOTSOCK, 0};
static const int fcntl_errs[] = {EBADF, EINVAL, 0};
static const int close_errs[] = {EBADF, EINTR, EIO, ENOSPC, EDQUOT, 0};

/* xb_listen with one call failing at the `skip`-th occurrence. */
static void listen_case(const char *host, const char *call, long skip, int err,
                        xb_stage stage, const char *detail)
{
    xb_addr addr;
    xb_error e = {XB_STAGE_NONE, 0, NULL};
    xb_sock s = 12345;

    CHECK(xb_addr_parse(host, 0, AF_UNSPEC, &addr, &e) == 0, "parse %s", host);
    int before = count_fds();
    for (int i = 0; i < REPEAT; i++) {
        xbfault_config(NULL);
        CHECK(xbfault_add(call, err, skip, 1) == 0, "arm %s", call);
        memset(&e, 0, sizeof(e));
        int rc = xb_listen(&addr, 5, &s, &e);
        CHECK(rc == -1, "%s %s#%ld errno %d: xb_listen returned %d", host, call, skip, err, rc);
        CHECK(s == XB_BADSOCK, "%s %s: out socket not reset", host, call);
        CHECK(e.stage == stage, "%s %s#%ld errno %d: stage %s, expected %s", host, call, skip,
              err, xb_stage_name(e.stage), xb_stage_name(stage));
        CHECK(e.code == err, "%s %s errno %d: code %d", host, call, err, e.code);
        CHECK(e.detail != NULL && strcmp(e.detail, detail) == 0, "%s %s: detail %s, expected %s",
              host, call, e.detail ? e.detail : "(null)", detail);
        CHECK(xbfault_injected() == 1, "%s %s: the shim did not inject", host, call);
        if (rc == 0)
            xb_close(s);
    }
    xbfault_config(NULL);
    CHECK(count_fds() == before, "%s %s errno %d: %d fds before, %d after", host, call, err,
          before, count_fds());
}

static void listen_cases(void)
{
    for (const int *e = socket_errs; *e; e++) {
        listen_case("127.0.0.1", "socket", 0, *e, XB_STAGE_SOCKET, "socket");
        listen_case("::1", "socket", 0, *e, XB_STAGE_SOCKET, "socket");
    }
    for (const int *e = sockopt_errs; *e; e++) {
        listen_case("127.0.0.1", "setsockopt", 0, *e, XB_STAGE_OPTION, "SO_REUSEADDR");
        listen_case("::1", "setsockopt", 0, *e, XB_STAGE_OPTION, "IPV6_V6ONLY");
        listen_case("::1", "setsockopt", 1, *e, XB_STAGE_OPTION, "SO_REUSEADDR");
    }
    for (const int *e = bind_errs; *e; e++) {
        listen_case("127.0.0.1", "bind", 0, *e, XB_STAGE_BIND, "bind");
        listen_case("::1", "bind", 0, *e, XB_STAGE_BIND, "bind");
    }
    for (const int *e = listen_errs; *e; e++) {
        listen_case("127.0.0.1", "listen", 0, *e, XB_STAGE_LISTEN, "listen");
        listen_case("::1", "listen", 0, *e, XB_STAGE_LISTEN, "listen");
    }
}

/* A failing close() on the error path must not change the error reported nor leak. */
static void close_on_error_path(void)
{
    xb_addr addr;
    xb_error e;
    xb_sock s;

    for (const int *c = close_errs; *c; c++) {
        int before = count_fds();
        CHECK(xb_addr_parse("127.0.0.1", 0, AF_INET, &addr, &e) == 0, "parse");
        xbfault_config(NULL);
        xbfault_add("listen", EADDRINUSE, 0, 1);
        xbfault_add("close", *c, 0, 1);
        CHECK(xb_listen(&addr, 5, &s, &e) == -1, "listen+close failure: xb_listen succeeded");
        CHECK(e.stage == XB_STAGE_LISTEN && e.code == EADDRINUSE,
              "close errno %d on the error path replaced the listen error: %s %d", *c,
              xb_stage_name(e.stage), e.code);
        CHECK(xbfault_injected() == 2, "close errno %d: %ld injected", *c, xbfault_injected());
        xbfault_config(NULL);
        CHECK(count_fds() == before, "close errno %d: fd leaked", *c);
    }
    /* xb_close itself reports the failure (and the fd is gone, as on Linux). */
    for (const int *c = close_errs; *c; c++) {
        int before = count_fds();
        CHECK(xb_socket_open(AF_INET, &s, &e) == 0, "open");
        xbfault_config(NULL);
        xbfault_add("close", *c, 0, 1);
        errno = 0;
        CHECK(xb_close(s) == -1 && errno == *c, "xb_close with errno %d: errno %d", *c, errno);
        xbfault_config(NULL);
        CHECK(count_fds() == before, "xb_close errno %d: fd leaked", *c);
    }
}

/* xb_socket_name and xb_socket_options on a live socket. */
static void query_cases(void)
{
    xb_addr addr, name;
    xb_error e;
    xb_sock s;
    xb_sockopts o;

    CHECK(xb_addr_parse("::1", 0, AF_INET6, &addr, &e) == 0, "parse");
    CHECK(xb_listen(&addr, 5, &s, &e) == 0, "listen on [::1]:0: stage %s code %d",
          xb_stage_name(e.stage), e.code);
    for (const int *c = getsockname_errs; *c; c++) {
        xbfault_config(NULL);
        xbfault_add("getsockname", *c, 0, 1);
        CHECK(xb_socket_name(s, &name, &e) == -1 && e.stage == XB_STAGE_NAME && e.code == *c,
              "getsockname errno %d: stage %s code %d", *c, xb_stage_name(e.stage), e.code);
        xbfault_config(NULL);
        xbfault_add("getsockname", *c, 0, 1);
        CHECK(xb_socket_options(s, &o, &e) == -1 && e.stage == XB_STAGE_NAME && e.code == *c,
              "options/getsockname errno %d", *c);
    }
    /* getsockopt: SO_REUSEADDR, SO_REUSEPORT, SO_ACCEPTCONN, IPV6_V6ONLY in that order. */
    static const char *const opt_names[] = {"SO_REUSEADDR", "SO_REUSEPORT", "SO_ACCEPTCONN",
                                            "IPV6_V6ONLY"};
    for (long skip = 0; skip < 4; skip++) {
        for (const int *c = sockopt_errs; *c; c++) {
            xbfault_config(NULL);
            xbfault_add("getsockopt", *c, skip, 1);
            int rc = xb_socket_options(s, &o, &e);
            CHECK(rc == -1 && e.stage == XB_STAGE_OPTION && e.code == *c &&
                      strcmp(e.detail, opt_names[skip]) == 0,
                  "getsockopt #%ld errno %d: rc %d stage %s code %d detail %s", skip, *c, rc,
                  xb_stage_name(e.stage), e.code, e.detail ? e.detail : "(null)");
        }
    }
    static const char *const fcntl_names[] = {"F_GETFD", "F_GETFL"};
    for (long skip = 0; skip < 2; skip++) {
        for (const int *c = fcntl_errs; *c; c++) {
            xbfault_config(NULL);
            CHECK(xbfault_add("fcntl", *c, skip, 1) == 0, "arm fcntl"); /* fcntl64 counts as fcntl */
            int rc = xb_socket_options(s, &o, &e);
            CHECK(rc == -1 && e.stage == XB_STAGE_OPTION && e.code == *c &&
                      strcmp(e.detail, fcntl_names[skip]) == 0,
                  "fcntl #%ld errno %d: rc %d stage %s code %d", skip, *c, rc,
                  xb_stage_name(e.stage), e.code);
        }
    }
    xbfault_config(NULL);
    CHECK(xb_socket_options(s, &o, &e) == 0 && o.reuseaddr == 1 && o.reuseport == 0 &&
              o.v6only == 1 && o.inheritable == 0 && o.nonblocking == 1 && o.listening == 1,
          "options without faults");
    xb_close(s);
}

/* getaddrinfo (IPv6 parsing) and getnameinfo (formatting). */
static void resolver_cases(void)
{
    static const int gai_errs[] = {EAI_AGAIN, EAI_FAIL, EAI_MEMORY, EAI_SYSTEM, EAI_NONAME, 0};
    static const int gni_errs[] = {EAI_AGAIN, EAI_FAIL, EAI_MEMORY, EAI_OVERFLOW, EAI_SYSTEM,
                                   EAI_FAMILY, 0};
    xb_addr addr;
    xb_error e;
    char buf[XB_ADDRSTRLEN];

    for (const int *c = gai_errs; *c; c++) {
        xbfault_config(NULL);
        xbfault_add("getaddrinfo", *c == EAI_SYSTEM ? ENOMEM : *c, 0, 1);
        memset(&e, 0, sizeof(e));
        CHECK(xb_addr_parse("fe80::1", 1, AF_UNSPEC, &addr, &e) == -1 &&
                  e.stage == XB_STAGE_ADDRESS && e.detail != NULL,
              "getaddrinfo %d: not reported", *c);
        /* Only "no such name" means the text was wrong; anything else must not say so. */
        if (*c == EAI_NONAME)
            CHECK(e.code == EINVAL, "EAI_NONAME: code %d", e.code);
        else
            CHECK(strstr(e.detail, "not a numeric") == NULL,
                  "getaddrinfo %d reported as a bad address: %s", *c, e.detail);
    }
    CHECK(xb_addr_parse("::1", 80, AF_UNSPEC, &addr, &e) == 0, "parse ::1");
    for (const int *c = gni_errs; *c; c++) {
        xbfault_config(NULL);
        xbfault_add("getnameinfo", *c == EAI_SYSTEM ? EIO : *c, 0, 1);
        CHECK(xb_addr_format(&addr, buf, sizeof(buf)) == -1 && buf[0] == '\0',
              "getnameinfo %d: format did not fail cleanly", *c);
    }
    xbfault_config(NULL);
    CHECK(xb_addr_format(&addr, buf, sizeof(buf)) == 0 && strcmp(buf, "[::1]:80") == 0,
          "format without faults: %s", buf);
}

/* The checks above can fail: the fd counter sees a leaked descriptor and the
 * shim really makes a call fail. */
static void controls(void)
{
    int before = count_fds();
    int fd = dup(1);
    CHECK(fd >= 0 && count_fds() == before + 1, "fd counter does not see a leaked fd");
    if (fd >= 0)
        close(fd);
    xbfault_config("socket:EMFILE");
    xb_sock s;
    xb_error e;
    CHECK(xb_socket_open(AF_INET, &s, &e) == -1 && e.code == EMFILE, "spec string not applied");
    CHECK(xbfault_config("nosuchcall:EIO") == -1, "bad spec accepted");
    CHECK(xbfault_config("bind:NOTANERRNO") == -1, "bad errno accepted");
    xbfault_config(NULL);
    CHECK(xb_socket_open(AF_INET, &s, &e) == 0, "socket after disarm");
    xb_close(s);
}

int main(void)
{
    xb_error e;
    CHECK(xb_startup(&e) == 0, "startup");
    controls();
    listen_cases();
    close_on_error_path();
    query_cases();
    resolver_cases();
    printf("test_core_faults: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
