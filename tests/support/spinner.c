/*
 * spinner.c -- the re-guard race attacker of tests/test_reguard_race.py.
 *
 *     spinner HOST PORT
 *
 * HOST is numeric (127.0.0.1, 0.0.0.0, ::1, ::); an IPv6 socket is IPV6_V6ONLY.
 * Driven one byte at a time over stdin, answering one byte on stdout:
 *
 *   'g'  arm: answer 'a', then spin -- socket(), SO_REUSEADDR, bind(HOST:PORT),
 *        close on failure -- as fast as it can, until a bind succeeds (the
 *        socket is then listen()ed and kept) or a command arrives.
 *   's'  stop spinning: answer 'W' if a bind succeeded (the socket is held),
 *        'L' if none did.
 *   'r'  release the socket held after a win: answer 'R'.
 *   'q'  exit 0.
 *
 * Prints "ready\n" first.  Every syscall is checked; an unexpected errno from
 * bind() (anything but EADDRINUSE/EACCES) is fatal (exit 1 with a message):
 * an attacker that cannot try proves nothing.  On exit it prints nothing more.
 */
#define _GNU_SOURCE 1
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void answer(char c)
{
    if (write(1, &c, 1) != 1) {
        perror("spinner: write");
        exit(1);
    }
}

static int command(int wait)
{
    struct pollfd p = {0, POLLIN, 0};
    char c;
    int n = poll(&p, 1, wait ? -1 : 0);

    if (n < 0) {
        perror("spinner: poll");
        exit(1);
    }
    if (n == 0)
        return 0;
    ssize_t got = read(0, &c, 1);
    if (got < 0) {
        perror("spinner: read");
        exit(1);
    }
    if (got == 0)
        exit(0); /* the test went away */
    return c;
}

int main(int argc, char **argv)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int family, one = 1, held = -1;

    if (argc != 3) {
        fprintf(stderr, "usage: spinner HOST PORT\n");
        return 2;
    }
    memset(&ss, 0, sizeof(ss));
    if (strchr(argv[1], ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        family = AF_INET6;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((unsigned short)atoi(argv[2]));
        if (inet_pton(AF_INET6, argv[1], &s6->sin6_addr) != 1) {
            fprintf(stderr, "spinner: bad address %s\n", argv[1]);
            return 2;
        }
        len = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        family = AF_INET;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((unsigned short)atoi(argv[2]));
        if (inet_pton(AF_INET, argv[1], &s4->sin_addr) != 1) {
            fprintf(stderr, "spinner: bad address %s\n", argv[1]);
            return 2;
        }
        len = sizeof(*s4);
    }
    if (printf("ready\n") < 0 || fflush(stdout) != 0)
        return 1;
    for (;;) {
        int c = command(1);
        if (c == 'q')
            return 0;
        if (c == 'r') {
            if (held >= 0 && close(held) != 0) {
                perror("spinner: close");
                return 1;
            }
            held = -1;
            answer('R');
            continue;
        }
        if (c == 's') { /* not armed: nothing won */
            answer(held >= 0 ? 'W' : 'L');
            continue;
        }
        if (c != 'g')
            continue;
        answer('a');
        for (;;) {
            int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                perror("spinner: socket");
                return 1;
            }
            if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
                (family == AF_INET6 &&
                 setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0)) {
                perror("spinner: setsockopt");
                return 1;
            }
            if (bind(fd, (struct sockaddr *)&ss, len) == 0) {
                (void)listen(fd, 8); /* may fail while the victim's socket listens */
                held = fd;
                break;
            }
            if (errno != EADDRINUSE && errno != EACCES) {
                perror("spinner: bind");
                return 1;
            }
            if (close(fd) != 0) {
                perror("spinner: close");
                return 1;
            }
            if (command(0) == 's') {
                answer('L');
                goto next;
            }
        }
        while (command(1) != 's')
            ;
        answer('W');
    next:;
    }
}
