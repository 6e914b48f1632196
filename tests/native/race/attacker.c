/*
 * attacker.c -- the bind->listen race attacker of tests/test_bind_listen_race.py.
 *
 *     attacker PORT REUSEPORT
 *
 * Loops until SIGTERM: socket(); SO_REUSEADDR=1 (and SO_REUSEPORT=1 when
 * REUSEPORT is 1); bind(127.0.0.1:PORT); listen(); while listening, accept and
 * answer every connection with "ATTACKER" (so a client can tell who took it);
 * then close and start over, leaving the port free for a moment each round so
 * that the server gets to bind -- and the attacker gets to listen in between
 * the server's bind and listen whenever the kernel allows it.
 *
 * Prints "ready" once started, and on SIGTERM one line of counters:
 *     rounds=N bound=N listened=N accepted=N
 */
#define _GNU_SOURCE 1
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static void pause_ns(long ns)
{
    struct timespec ts = {0, ns};
    (void)nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    unsigned long rounds = 0, bound = 0, listened = 0, accepted = 0;
    struct sockaddr_in sin;
    struct sigaction sa;
    int one = 1;

    if (argc != 3) {
        fprintf(stderr, "usage: attacker PORT REUSEPORT\n");
        return 2;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    if (sigaction(SIGTERM, &sa, NULL) != 0)
        return 2;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)atoi(argv[1]));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int reuseport = atoi(argv[2]);

    printf("ready\n");
    fflush(stdout);
    while (!stop) {
        rounds++;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            perror("socket");
            return 1;
        }
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
            (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)) {
            perror("setsockopt");
            return 1;
        }
        if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0) {
            bound++;
            if (listen(fd, 16) == 0) {
                listened++;
                /* Hold the port a little (50 us), answering anyone who connects. */
                pause_ns(50000);
                struct pollfd p = {fd, POLLIN, 0};
                if (poll(&p, 1, 0) > 0) {
                    int c;
                    while ((c = accept4(fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
                        accepted++;
                        if (write(c, "ATTACKER", 8) != 8) { /* the client may be gone */ }
                        close(c);
                    }
                }
            }
        }
        close(fd);
        pause_ns((long)(rounds % 7) * 20000); /* 0-120 us with the port free */
    }
    printf("rounds=%lu bound=%lu listened=%lu accepted=%lu\n", rounds, bound, listened, accepted);
    return 0;
}
