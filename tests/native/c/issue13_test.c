/* issue13_test.c -- the core functions of issue 13, natively (run under valgrind by
 * `make test-valgrind`): strict bind, unlisten, bound-socket listing, TIME_WAIT
 * count, process start time.  Linux only (it is built with the Linux core). */
#define _GNU_SOURCE 1
#include "xbind.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(cond, what)                                                                    \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "FAIL: %s (line %d)\n", what, __LINE__);                       \
            return 1;                                                                        \
        }                                                                                    \
    } while (0)

static int opt(xb_sock s, int level, int name)
{
    int v = -1;
    socklen_t len = (socklen_t)sizeof(v);
    if (getsockopt(s, level, name, &v, &len) != 0)
        return -1;
    return v != 0;
}

int main(void)
{
    xb_addr addr, name;
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    xb_listeners list = {NULL, 0, 0};
    xb_sock s = XB_BADSOCK;
    size_t count = 99, i;
    double started = 0.0;
    int port, found = 0;

    /* Measured: a socket whose port the OS chose (port 0) loses it at unlisten. */
    CHECK(xb_addr_parse("127.0.0.1", 0, AF_INET, &addr, &err) == 0, "parse");
    CHECK(xb_listen_ex(&addr, 8, XB_LISTEN_STRICT_BIND, &s, &err) == 0, "strict listen, port 0");
    CHECK(xb_socket_name(s, &name, &err) == 0, "getsockname");
    port = xb_addr_port(&name);
    CHECK(xb_socket_unlisten(s, &err) == 0, "unlisten, port 0");
    {
        xb_sock probe = XB_BADSOCK;
        xb_addr same;
        CHECK(xb_addr_parse("127.0.0.1", port, AF_INET, &same, &err) == 0, "parse");
        CHECK(xb_socket_raw(AF_INET, &probe, &err) == 0, "socket");
        CHECK(xb_socket_bind(probe, &same, &err) == 0, "the OS-chosen port was released");
        CHECK(xb_close(probe) == 0, "close");
    }
    CHECK(xb_close(s) == 0, "close");

    /* The same port, named in bind(): kept. */
    CHECK(xb_addr_parse("127.0.0.1", port, AF_INET, &addr, &err) == 0, "parse");
    CHECK(xb_listen_ex(&addr, 8, XB_LISTEN_STRICT_BIND, &s, &err) == 0, "strict listen");
    CHECK(opt(s, SOL_SOCKET, SO_REUSEADDR) == 1, "SO_REUSEADDR set once listening");
    CHECK(xb_socket_unlisten(s, &err) == 0, "unlisten");
    {
        xb_sock probe = XB_BADSOCK;
        CHECK(xb_socket_raw(AF_INET, &probe, &err) == 0, "socket");
        CHECK(xb_socket_bind(probe, &addr, &err) == -1 && err.code == EADDRINUSE,
              "a named port is kept");
        CHECK(xb_close(probe) == 0, "close");
    }
    CHECK(opt(s, SOL_SOCKET, SO_ACCEPTCONN) == 0, "not listening after unlisten");
    CHECK(opt(s, SOL_SOCKET, SO_REUSEADDR) == 0, "SO_REUSEADDR cleared by unlisten");
    CHECK(xb_socket_unlisten(s, &err) == -1, "unlisten of a socket that does not listen");

    CHECK(xb_owner_bound(port, 0, &list, &err) == 0, "bound sockets");
    for (i = 0; i < list.count; i++)
        if (list.items[i].port == port && strcmp(list.items[i].host, "127.0.0.1") == 0)
            found = 1;
    CHECK(found == xb_owner_bound_visible(), "our unlistened socket is listed (6.6+)");
    xb_listeners_free(&list);

    CHECK(xb_owner_timewait(port, &count, &err) == 0 && count == 0, "no TIME_WAIT entries");
    CHECK(xb_owner_timewait(0, &count, &err) == -1 && err.code == EINVAL, "port 0 refused");

    CHECK(xb_process_start_time((long)getpid(), &started, &err) == 0 && started > 1e9,
          "our start time");
    CHECK(xb_process_start_time(-1, &started, &err) == -1 && err.code == ESRCH, "no pid -1");
    CHECK(xb_close(s) == 0, "close");
    printf("issue13: port %d, bound listed %d, start time %.2f\n", port, found, started);
    return 0;
}
