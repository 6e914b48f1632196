/*
 * holders.c -- the busy host of bench/owner.py: `holders PROCESSES SOCKETS`
 * forks PROCESSES children that each open SOCKETS TCP listening sockets on
 * 127.0.0.1 (port 0), then prints "READY <port>" (the first port of the
 * child that reported first) and waits until its stdin closes; the children die with it
 * (PR_SET_PDEATHSIG) and are killed and reaped when it ends.
 *
 * bench/owner.py runs it as another uid (setpriv), so that the sockets and
 * the processes belong to that uid.  Linux only.
 */
#define _GNU_SOURCE 1

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int listener(void)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(fd, 1) != 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) != 0)
        return -1;
    return ntohs(sin.sin_port);
}

int main(int argc, char **argv)
{
    int procs, socks, i, first = -1, ready[2];
    pid_t *kids;
    struct rlimit rl;
    char c;

    if (argc != 3 || (procs = atoi(argv[1])) <= 0 || (socks = atoi(argv[2])) <= 0) {
        fprintf(stderr, "usage: holders PROCESSES SOCKETS\n");
        return 2;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)socks + 16) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    kids = calloc((size_t)procs, sizeof(*kids));
    if (kids == NULL || pipe(ready) != 0)
        return 1;
    for (i = 0; i < procs; i++) {
        kids[i] = fork();
        if (kids[i] < 0) {
            perror("fork");
            break;
        }
        if (kids[i] == 0) {
            int k, port = 0;
            (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
            close(ready[0]);
            for (k = 0; k < socks; k++) {
                int p = listener();
                if (p < 0) {
                    port = -1;
                    break;
                }
                if (k == 0)
                    port = p;
            }
            if (write(ready[1], &port, sizeof(port)) != (ssize_t)sizeof(port))
                _exit(1);
            for (;;)
                pause();
        }
    }
    close(ready[1]);
    if (i == procs) {
        for (i = 0; i < procs; i++) {
            int port;
            if (read(ready[0], &port, sizeof(port)) != (ssize_t)sizeof(port) || port < 0) {
                fprintf(stderr, "holders: a child could not open its sockets\n");
                first = -1;
                break;
            }
            if (i == 0)
                first = port;
        }
        i = procs;
    }
    if (first > 0) {
        printf("READY %d\n", first);
        fflush(stdout);
        while (read(0, &c, 1) > 0)
            ;
    }
    for (int k = 0; k < i; k++)
        if (kids[k] > 0)
            kill(kids[k], SIGKILL);
    for (int k = 0; k < i; k++)
        if (kids[k] > 0)
            (void)waitpid(kids[k], NULL, 0);
    free(kids);
    return first > 0 ? 0 : 1;
}
