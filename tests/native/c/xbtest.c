/*
 * xbtest.c -- C-level tests of the exclusive-bind core, over ext/xbind.h only.
 *
 * Built twice by tests/wine.py: natively (gcc, POSIX core) and for Windows
 * (x86_64-w64-mingw32-gcc, Winsock core, run under Wine).  No Python.
 *
 *   xbtest selftest              self-checking tests; prints "ok N - ..." /
 *                                "not ok N - ..." lines, exit status = failures
 *   xbtest victim core|plain[+listen] ADDR
 *                                bind ADDR:0 and do NOT listen ("core": the
 *                                core's xb_socket_open + xb_socket_bind;
 *                                "plain": socket() with no option, the way
 *                                Twisted makes a listening socket on Windows);
 *                                prints "READY <port>", then holds the socket
 *                                until its standard input is closed
 *                                ("+listen": also listen, to show what Wine
 *                                cannot show: see docs/windows.rst)
 *   xbtest attack ADDR PORT      one fresh socket per attacker option (none,
 *                                SO_REUSEADDR, SO_EXCLUSIVEADDRUSE), each tries
 *                                bind(ADDR:PORT) and is closed again; prints
 *                                "<option> <0 or the OS error code>" per line
 *   xbtest timewait              exclusive server on 127.0.0.1:P accepts one
 *                                connection; prints the result of a new
 *                                exclusive bind+listen of P after closing the
 *                                listener with the connection still open
 *                                ("live <code>") and after the server closed
 *                                the connection first, leaving it in TIME_WAIT
 *                                ("timewait <code>")
 */
#ifndef _WIN32
#  ifndef _GNU_SOURCE
#    define _GNU_SOURCE 1
#  endif
#endif

#include "xbind.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#  include <windows.h>
#  define E_INUSE WSAEADDRINUSE
#  define E_NOTAVAIL WSAEADDRNOTAVAIL
#  define E_NOFAMILY WSAEAFNOSUPPORT
#  define E_INVAL WSAEINVAL
#  define CLOSE_RAW(s) closesocket(s)
#else
#  include <fcntl.h>
#  include <unistd.h>
#  include <arpa/inet.h>
#  include <sys/select.h>
#  define E_INUSE EADDRINUSE
#  define E_NOTAVAIL EADDRNOTAVAIL
#  define E_NOFAMILY EAFNOSUPPORT
#  define E_INVAL EINVAL
#  define CLOSE_RAW(s) close(s)
#endif

static int failures = 0;
static int count = 0;

static void check(int cond, const char *what, const char *fmt, long a, long b)
{
    count++;
    if (cond) {
        printf("ok %d - %s\n", count, what);
    } else {
        failures++;
        printf("not ok %d - %s: ", count, what);
        printf(fmt, a, b);
        printf("\n");
    }
    fflush(stdout);
}

#define CHECK_EQ(what, got, want) \
    check((long)(got) == (long)(want), (what), "got %ld, want %ld", (long)(got), (long)(want))

static void show_error(const char *what, const xb_error *err)
{
    char text[256];
    xb_strerror(err->code, text, sizeof(text));
    printf("# %s: stage=%s detail=%s code=%d (%s)\n", what, xb_stage_name(err->stage),
           err->detail ? err->detail : "(null)", err->code, text);
}

static int parse(const char *host, long port, int family, xb_addr *out)
{
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    if (xb_addr_parse(host, port, family, out, &err) != 0) {
        show_error("xb_addr_parse", &err);
        return -1;
    }
    return 0;
}

/* A socket made without the core: no option, inheritable by default. */
static xb_sock plain_socket(int family)
{
#ifdef _WIN32
    return socket(family, SOCK_STREAM, IPPROTO_TCP);
#else
    return socket(family, SOCK_STREAM, IPPROTO_TCP);
#endif
}

static void test_options(void)
{
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    xb_sockopts o;
    xb_addr a;
    xb_sock s;

    if (parse("127.0.0.1", 0, AF_INET, &a) != 0) {
        check(0, "parse 127.0.0.1:0", "%ld %ld", 0, 0);
        return;
    }
    check(xb_socket_open(AF_INET, &s, &err) == 0, "xb_socket_open(AF_INET)", "stage %ld code %ld",
          err.stage, err.code);
    if (s == XB_BADSOCK)
        return;
    check(xb_socket_bind(s, &a, &err) == 0, "xb_socket_bind(127.0.0.1:0)", "stage %ld code %ld",
          err.stage, err.code);
    memset(&o, 0x55, sizeof(o));
    check(xb_socket_options(s, &o, &err) == 0, "xb_socket_options on the bound socket",
          "stage %ld code %ld", err.stage, err.code);
#ifdef _WIN32
    CHECK_EQ("SO_EXCLUSIVEADDRUSE reads back 1", o.exclusiveaddruse, 1);
    CHECK_EQ("SO_REUSEADDR reads back 0", o.reuseaddr, 0);
    CHECK_EQ("SO_REUSEPORT reported as absent (-1)", o.reuseport, -1);
    CHECK_EQ("xb_socket_options: not inheritable", o.inheritable, 0);
    {
        DWORD flags = 0xFFFF;
        BOOL okh = GetHandleInformation((HANDLE)s, &flags);
        check(okh != 0, "GetHandleInformation on the core's socket", "last error %ld %ld",
              (long)GetLastError(), 0);
        CHECK_EQ("GetHandleInformation: HANDLE_FLAG_INHERIT clear", flags & HANDLE_FLAG_INHERIT, 0);
    }
#else
    CHECK_EQ("SO_REUSEADDR reads back 1 (restart past TIME_WAIT)", o.reuseaddr, 1);
#  ifdef SO_REUSEPORT
    CHECK_EQ("SO_REUSEPORT reads back 0", o.reuseport, 0);
#  else
    CHECK_EQ("SO_REUSEPORT reported as absent (-1)", o.reuseport, -1);
#  endif
    CHECK_EQ("SO_EXCLUSIVEADDRUSE reported as absent (-1)", o.exclusiveaddruse, -1);
    CHECK_EQ("xb_socket_options: not inheritable", o.inheritable, 0);
    CHECK_EQ("xb_socket_options: non-blocking", o.nonblocking, 1);
    {
        int fdflags = fcntl(s, F_GETFD);
        int flflags = fcntl(s, F_GETFL);
        check(fdflags >= 0 && (fdflags & FD_CLOEXEC) != 0, "fcntl: FD_CLOEXEC set",
              "flags %ld errno %ld", fdflags, errno);
        check(flflags >= 0 && (flflags & O_NONBLOCK) != 0, "fcntl: O_NONBLOCK set",
              "flags %ld errno %ld", flflags, errno);
    }
#endif
    CHECK_EQ("IPv4 socket: v6only reported as -1", o.v6only, -1);
    if (o.listening != -1)
        CHECK_EQ("SO_ACCEPTCONN 0 before listen", o.listening, 0);
    check(xb_socket_listen(s, 5, &err) == 0, "xb_socket_listen", "stage %ld code %ld", err.stage,
          err.code);
    check(xb_socket_options(s, &o, &err) == 0, "xb_socket_options after listen",
          "stage %ld code %ld", err.stage, err.code);
    if (o.listening != -1)
        CHECK_EQ("SO_ACCEPTCONN 1 after listen", o.listening, 1);
    check(xb_close(s) == 0, "xb_close", "error %ld %ld", xb_last_error(), 0);

    /* Control: a socket made without the core IS inheritable, and the
     * function that reports it says so (the checks above can fail). */
    s = plain_socket(AF_INET);
    check(s != XB_BADSOCK, "control: plain socket()", "error %ld %ld", xb_last_error(), 0);
    if (s == XB_BADSOCK)
        return;
    if (xb_socket_bind(s, &a, &err) == 0 && xb_socket_options(s, &o, &err) == 0) {
        CHECK_EQ("control: plain socket reported inheritable", o.inheritable, 1);
#ifdef _WIN32
        CHECK_EQ("control: plain socket SO_EXCLUSIVEADDRUSE 0", o.exclusiveaddruse, 0);
        {
            DWORD flags = 0;
            GetHandleInformation((HANDLE)s, &flags);
            CHECK_EQ("control: GetHandleInformation: HANDLE_FLAG_INHERIT set",
                     (flags & HANDLE_FLAG_INHERIT) != 0, 1);
        }
#else
        CHECK_EQ("control: plain socket SO_REUSEADDR 0", o.reuseaddr, 0);
#endif
    } else {
        check(0, "control: bind + options on a plain socket", "stage %ld code %ld", err.stage,
              err.code);
    }
    CLOSE_RAW(s);
}

/* Options can be read before bind (Windows: the unbound socket has no name). */
static void test_unbound(void)
{
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    xb_sockopts o;
    xb_sock s;
    int family;

    for (family = 0; family < 2; family++) {
        int af = family == 0 ? AF_INET : AF_INET6;
        if (xb_socket_open(af, &s, &err) != 0) {
            printf("# family %d not available here (code %d)\n", af, err.code);
            continue;
        }
        memset(&o, 0x55, sizeof(o));
        memset(&err, 0, sizeof(err));
        check(xb_socket_options(s, &o, &err) == 0,
              af == AF_INET ? "options of an unbound IPv4 socket" : "options of an unbound IPv6 socket",
              "stage %ld code %ld", err.stage, err.code);
        CHECK_EQ("  ... not inheritable", o.inheritable, 0);
        CHECK_EQ("  ... v6only", o.v6only, af == AF_INET6 ? 1 : -1);
#ifdef _WIN32
        CHECK_EQ("  ... SO_EXCLUSIVEADDRUSE 1", o.exclusiveaddruse, 1);
#else
        CHECK_EQ("  ... SO_REUSEADDR 1", o.reuseaddr, 1);
#endif
        xb_close(s);
    }
}

static void test_ipv6(void)
{
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    xb_sockopts o;
    xb_addr a;
    xb_sock s;

    if (xb_socket_open(AF_INET6, &s, &err) != 0) {
        printf("# IPv6 socket not available here (code %d): IPv6 checks skipped\n", err.code);
        return;
    }
    if (parse("::1", 0, AF_INET6, &a) != 0 || xb_socket_bind(s, &a, &err) != 0) {
        printf("# [::1] cannot be bound here (code %d): IPv6 checks skipped\n", err.code);
        xb_close(s);
        return;
    }
    check(xb_socket_options(s, &o, &err) == 0, "xb_socket_options on [::1]:0", "stage %ld code %ld",
          err.stage, err.code);
    CHECK_EQ("IPV6_V6ONLY reads back 1", o.v6only, 1);
    CHECK_EQ("IPv6 socket not inheritable", o.inheritable, 0);
    xb_close(s);
}

static void test_conflicts(void)
{
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    xb_addr a, name;
    xb_sock first = XB_BADSOCK, second = (xb_sock)12345;
    int port;
    char text[256], buf[XB_ADDRSTRLEN];

    if (parse("127.0.0.1", 0, AF_INET, &a) != 0)
        return;
    check(xb_listen(&a, 5, &first, &err) == 0, "first exclusive server listens on 127.0.0.1:0",
          "stage %ld code %ld", err.stage, err.code);
    if (first == XB_BADSOCK)
        return;
    check(xb_socket_name(first, &name, &err) == 0, "xb_socket_name", "stage %ld code %ld",
          err.stage, err.code);
    port = xb_addr_port(&name);
    check(port > 0, "the OS chose a port", "port %ld %ld", port, 0);
    check(xb_addr_format(&name, buf, sizeof(buf)) == 0 && strncmp(buf, "127.0.0.1:", 10) == 0,
          "xb_addr_format gives 127.0.0.1:PORT", "%ld %ld", 0, 0);
    printf("# first server on %s\n", buf);

    if (parse("127.0.0.1", port, AF_INET, &a) != 0)
        return;
    memset(&err, 0, sizeof(err));
    check(xb_listen(&a, 5, &second, &err) == -1, "second exclusive server on the same port fails",
          "returned success %ld %ld", 0, 0);
    show_error("second server", &err);
    CHECK_EQ("second server: stage is bind", err.stage, XB_STAGE_BIND);
    CHECK_EQ("second server: address in use", err.code, E_INUSE);
    check(err.detail != NULL && strcmp(err.detail, "bind") == 0, "second server: detail names bind",
          "%ld %ld", 0, 0);
    check(second == XB_BADSOCK, "second server: no socket left open (*out is XB_BADSOCK)", "%ld %ld",
          0, 0);
    xb_strerror(err.code, text, sizeof(text));
    check(text[0] != '\0' && strcmp(text, "unknown error") != 0, "the OS error has a text",
          "%ld %ld", 0, 0);
    printf("# message: %s\n", text);
    xb_close(first);

#ifdef _WIN32
    /* The state in which Wine applies Windows' rules: bound, not listening. */
    {
        xb_sock s1 = XB_BADSOCK, s2 = XB_BADSOCK;
        if (parse("127.0.0.1", 0, AF_INET, &a) == 0 && xb_socket_open(AF_INET, &s1, &err) == 0 &&
            xb_socket_bind(s1, &a, &err) == 0 && xb_socket_name(s1, &name, &err) == 0 &&
            parse("127.0.0.1", xb_addr_port(&name), AF_INET, &a) == 0) {
            int rc = xb_listen(&a, 5, &s2, &err);
            check(rc == -1, "exclusive over a bound (not listening) exclusive socket fails",
                  "rc %ld %ld", rc, 0);
            CHECK_EQ("  ... at the bind stage", err.stage, XB_STAGE_BIND);
            CHECK_EQ("  ... with WSAEADDRINUSE", err.code, WSAEADDRINUSE);
        } else {
            check(0, "bound exclusive socket for the conflict test", "stage %ld code %ld",
                  err.stage, err.code);
        }
        if (s1 != XB_BADSOCK)
            xb_close(s1);
        if (s2 != XB_BADSOCK)
            xb_close(s2);
    }
#endif
}

static void test_stages(void)
{
    xb_error err;
    xb_addr a;
    xb_sock s = (xb_sock)777;

    memset(&err, 0, sizeof(err));
    CHECK_EQ("host names are refused (no DNS)", xb_addr_parse("localhost", 80, AF_UNSPEC, &a, &err),
             -1);
    CHECK_EQ("  ... stage address", err.stage, XB_STAGE_ADDRESS);
    memset(&err, 0, sizeof(err));
    CHECK_EQ("port 65536 refused", xb_addr_parse("127.0.0.1", 65536, AF_UNSPEC, &a, &err), -1);
    CHECK_EQ("  ... stage address", err.stage, XB_STAGE_ADDRESS);
    memset(&err, 0, sizeof(err));
    CHECK_EQ("port -1 refused", xb_addr_parse("127.0.0.1", -1, AF_UNSPEC, &a, &err), -1);
    memset(&err, 0, sizeof(err));
    CHECK_EQ("IPv6 literal refused for AF_INET", xb_addr_parse("::1", 1, AF_INET, &a, &err), -1);
    CHECK_EQ("  ... stage address", err.stage, XB_STAGE_ADDRESS);

    memset(&err, 0, sizeof(err));
    CHECK_EQ("xb_socket_open(unknown family) fails", xb_socket_open(12345, &s, &err), -1);
    CHECK_EQ("  ... stage socket", err.stage, XB_STAGE_SOCKET);
    CHECK_EQ("  ... EAFNOSUPPORT", err.code, E_NOFAMILY);
    check(s == XB_BADSOCK, "  ... *out is XB_BADSOCK", "%ld %ld", 0, 0);

    /* 192.0.2.1 (TEST-NET-1) is never an address of this host. */
    if (parse("192.0.2.1", 0, AF_INET, &a) == 0) {
        memset(&err, 0, sizeof(err));
        s = (xb_sock)777;
        CHECK_EQ("xb_listen on a foreign address fails", xb_listen(&a, 5, &s, &err), -1);
        show_error("foreign address", &err);
        CHECK_EQ("  ... stage bind", err.stage, XB_STAGE_BIND);
        CHECK_EQ("  ... EADDRNOTAVAIL", err.code, E_NOTAVAIL);
        check(s == XB_BADSOCK, "  ... no socket left open", "%ld %ld", 0, 0);
    }
    if (parse("127.0.0.1", 0, AF_INET, &a) == 0 && xb_socket_open(AF_INET, &s, &err) == 0) {
        memset(&err, 0, sizeof(err));
        CHECK_EQ("negative backlog refused", xb_socket_listen(s, -1, &err), -1);
        CHECK_EQ("  ... stage listen", err.stage, XB_STAGE_LISTEN);
        CHECK_EQ("  ... EINVAL", err.code, E_INVAL);
        xb_close(s);
    }
    CHECK_EQ("xb_close(XB_BADSOCK) fails", xb_close(XB_BADSOCK), -1);
    check(strcmp(xb_stage_name(XB_STAGE_BIND), "bind") == 0, "xb_stage_name(BIND) is \"bind\"",
          "%ld %ld", 0, 0);
    check(xb_stage_name((xb_stage)999) != NULL, "xb_stage_name(out of range) is not NULL", "%ld %ld",
          0, 0);
}

static int selftest(void)
{
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    check(xb_startup(&err) == 0, "xb_startup", "code %ld %ld", err.code, 0);
    check(xb_startup(&err) == 0, "xb_startup is idempotent", "code %ld %ld", err.code, 0);
    test_options();
    test_unbound();
    test_ipv6();
    test_conflicts();
    test_stages();
    printf("1..%d\n", count);
    printf("# %d failed\n", failures);
    return failures > 100 ? 100 : failures;
}

static int victim(const char *kind, const char *host)
{
    int listening = 0;
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    xb_addr a, name;
    xb_sock s;
    char line[64];

    if (xb_startup(&err) != 0 || parse(host, 0, AF_UNSPEC, &a) != 0) {
        printf("ERROR startup/parse\n");
        return 2;
    }
    if (strcmp(kind, "core+listen") == 0)
        kind = "core", listening = 1;
    else if (strcmp(kind, "plain+listen") == 0)
        kind = "plain", listening = 1;
    if (strcmp(kind, "core") == 0) {
        if (xb_socket_open(xb_addr_family(&a), &s, &err) != 0) {
            show_error("victim open", &err);
            printf("ERROR open %d\n", err.code);
            return 2;
        }
    } else if (strcmp(kind, "plain") == 0) {
        /* Twisted on Windows: socket(), no option, then bind (and listen). */
        s = plain_socket(xb_addr_family(&a));
        if (s == XB_BADSOCK) {
            printf("ERROR socket %d\n", xb_last_error());
            return 2;
        }
    } else {
        printf("ERROR unknown victim kind %s\n", kind);
        return 2;
    }
    if (xb_socket_bind(s, &a, &err) != 0 || xb_socket_name(s, &name, &err) != 0) {
        show_error("victim bind", &err);
        printf("ERROR bind %d\n", err.code);
        xb_close(s);
        return 2;
    }
    if (listening && xb_socket_listen(s, 5, &err) != 0) {
        show_error("victim listen", &err);
        printf("ERROR listen %d\n", err.code);
        xb_close(s);
        return 2;
    }
    printf("READY %d\n", xb_addr_port(&name));
    fflush(stdout);
    while (fgets(line, (int)sizeof(line), stdin) != NULL) {
    }
    xb_close(s);
    return 0;
}

static int attack(const char *host, const char *port_text)
{
    static const struct {
        const char *name;
        int level, option;
    } modes[] = {
        {"none", 0, 0},
        {"SO_REUSEADDR", SOL_SOCKET, SO_REUSEADDR},
#ifdef _WIN32
        {"SO_EXCLUSIVEADDRUSE", SOL_SOCKET, SO_EXCLUSIVEADDRUSE},
#endif
    };
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    xb_addr a;
    size_t i;

    if (xb_startup(&err) != 0 || parse(host, strtol(port_text, NULL, 10), AF_UNSPEC, &a) != 0) {
        printf("ERROR startup/parse\n");
        return 2;
    }
    for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        int one = 1, code = 0;
        xb_sock s = plain_socket(xb_addr_family(&a));
        if (s == XB_BADSOCK) {
            printf("ERROR socket %d\n", xb_last_error());
            return 2;
        }
        if (modes[i].level != 0 &&
            setsockopt(s, modes[i].level, modes[i].option, (const char *)&one, (xb_socklen)sizeof(one)) != 0) {
            printf("ERROR setsockopt %s %d\n", modes[i].name, xb_last_error());
            CLOSE_RAW(s);
            return 2;
        }
        if (bind(s, (const struct sockaddr *)&a.ss, a.len) != 0)
            code = xb_last_error();
        printf("%s %d\n", modes[i].name, code);
        CLOSE_RAW(s);
    }
    fflush(stdout);
    return 0;
}

/* Wait until s is readable (accept ready / data / EOF); 0 on success. */
static int wait_readable(xb_sock s)
{
    fd_set rd;
    struct timeval tv = {10, 0};
    FD_ZERO(&rd);
    FD_SET(s, &rd);
    return select((int)s + 1, &rd, NULL, NULL, &tv) == 1 ? 0 : -1;
}

/* 0 if an exclusive server can bind+listen a again now, else the OS error code. */
static int relisten(const xb_addr *a)
{
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    xb_sock s = XB_BADSOCK;
    if (xb_listen(a, 5, &s, &err) != 0)
        return err.code ? err.code : -1;
    xb_close(s);
    return 0;
}

static int timewait(void)
{
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    xb_addr a, name;
    xb_sock lst = XB_BADSOCK, cli, srv;
    char byte;

    if (xb_startup(&err) != 0 || parse("127.0.0.1", 0, AF_INET, &a) != 0 ||
        xb_listen(&a, 5, &lst, &err) != 0 || xb_socket_name(lst, &name, &err) != 0) {
        show_error("timewait setup", &err);
        return 2;
    }
    cli = plain_socket(AF_INET);
    if (cli == XB_BADSOCK || connect(cli, (const struct sockaddr *)&name.ss, name.len) != 0 ||
        wait_readable(lst) != 0) {
        printf("ERROR connect %d\n", xb_last_error());
        return 2;
    }
    srv = accept(lst, NULL, NULL);
    if (srv == XB_BADSOCK) {
        printf("ERROR accept %d\n", xb_last_error());
        return 2;
    }
    /* listener closed, connection alive */
    xb_close(lst);
    printf("live %d\n", relisten(&name));
    /* the server closes first: its side of the connection goes to TIME_WAIT */
    xb_close(srv);
    if (wait_readable(cli) != 0 || recv(cli, &byte, 1, 0) != 0) {
        printf("ERROR no EOF %d\n", xb_last_error());
        return 2;
    }
    CLOSE_RAW(cli);
    printf("timewait %d\n", relisten(&name));
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 4096);
    if (argc == 2 && strcmp(argv[1], "selftest") == 0)
        return selftest();
    if (argc == 4 && strcmp(argv[1], "victim") == 0)
        return victim(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "attack") == 0)
        return attack(argv[2], argv[3]);
    if (argc == 2 && strcmp(argv[1], "timewait") == 0)
        return timewait();
    fprintf(stderr, "usage: xbtest selftest | victim core|plain ADDR | attack ADDR PORT | timewait\n");
    return 2;
}
