/*
 * owner_lookup_test.c -- xb_owner_listeners() end to end on Linux, for valgrind
 * (make test-valgrind): a listener of this process among many other sockets
 * (with holes in the descriptor table and the listener on two descriptors) is
 * found with our pid once, by every mode; a forked child holding the same
 * listener is found too, except in self-only mode; the cookie the kernel
 * reports is the one getsockopt(SO_COOKIE) gives.
 */
#ifndef _GNU_SOURCE
#  define _GNU_SOURCE 1
#endif
#include "xbind.h"

#include <stdio.h>

#ifdef __linux__
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOISE 600

static int failures;

static void check(int ok, const char *what)
{
    printf("%s %s\n", ok ? "ok" : "FAIL", what);
    if (!ok)
        failures++;
}

static int has_pid(const xb_listener *l, long pid)
{
    int k, n = 0;
    for (k = 0; k < l->npids; k++)
        n += l->pids[k] == pid;
    return n;
}

static int lookup(int port, unsigned flags, xb_listeners *list)
{
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    if (xb_owner_listeners(port, flags, list, &err) != 0) {
        printf("lookup failed: %s (%d)\n", err.detail, err.code);
        return -1;
    }
    return 0;
}

int main(void)
{
    int noise[NOISE];
    int i, fd, dup_fd, port;
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    xb_listeners list = {NULL, 0, 0};
    long self = (long)getpid();
    pid_t child;
    int to_child[2];

    for (i = 0; i < NOISE; i++)
        noise[i] = socket(AF_INET, SOCK_STREAM, 0);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(fd, 1) != 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) != 0) {
        perror("listener");
        return 1;
    }
    port = ntohs(sin.sin_port);
    for (i = 0; i < NOISE; i += 2)
        (void)close(noise[i]);
    dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, fd + 50);

    if (lookup(port, XB_OWNER_SELF_ONLY, &list) == 0) {
        check(list.count == 1 && has_pid(&list.items[0], self) == 1, "self-only: our pid, once");
#ifdef SO_COOKIE
        {
            unsigned long long cookie = 0;
            socklen_t clen = sizeof(cookie);
            check(getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &clen) == 0 && list.count == 1 &&
                      list.items[0].cookie == cookie && cookie != 0,
                  "the kernel's cookie is SO_COOKIE's");
        }
#endif
    } else {
        failures++;
    }
    xb_listeners_free(&list);

    if (pipe(to_child) != 0)
        return 1;
    fflush(stdout); /* the child must not write our buffered lines again */
    child = fork();
    if (child == 0) {
        char c;
        (void)close(to_child[1]);
        _exit(read(to_child[0], &c, 1) < 0 ? 1 : 0); /* until the parent is done */
    }
    (void)close(to_child[0]);
    if (lookup(port, 0, &list) == 0)
        check(list.count == 1 && has_pid(&list.items[0], self) == 1 &&
                  has_pid(&list.items[0], (long)child) == 1 && list.items[0].npids == 2,
              "full: our pid and the child's");
    else
        failures++;
    xb_listeners_free(&list);
    if (lookup(port, XB_OWNER_ALL_PROCESSES, &list) == 0)
        check(list.count == 1 && list.items[0].npids == 2, "all processes: both");
    else
        failures++;
    xb_listeners_free(&list);
    if (lookup(port, XB_OWNER_SELF_ONLY, &list) == 0)
        check(list.count == 1 && list.items[0].npids == 1 && has_pid(&list.items[0], self),
              "self-only: not the child");
    else
        failures++;
    xb_listeners_free(&list);
    if (lookup(port, XB_OWNER_NO_PROCESSES, &list) == 0)
        check(list.count == 1 && list.items[0].npids == 0 && list.items[0].inode != 0,
              "no processes: inode only");
    else
        failures++;
    xb_listeners_free(&list);

    (void)close(to_child[1]);
    (void)waitpid(child, NULL, 0);
    (void)close(fd);
    if (dup_fd >= 0)
        (void)close(dup_fd);
    for (i = 1; i < NOISE; i += 2)
        (void)close(noise[i]);
    printf("owner_lookup_test: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
#else
int main(void)
{
    printf("owner_lookup_test: Linux only, skipped\n");
    return 0;
}
#endif
