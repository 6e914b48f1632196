/*
 * floor.c -- the floors of bench/owner.py: bare C loops over the same
 * descriptors and processes an owner lookup must look at, in the process that
 * runs the lookup (loaded with ctypes: no Python.h here, and the loops see
 * this process's own descriptors).  No parsing, no matching, no allocation:
 * what is left is the cost of the system calls themselves.
 *
 * Each function makes one pass and returns its wall time in milliseconds
 * (CLOCK_MONOTONIC), or a negative value if a call it cannot do without
 * failed; counts go to the out-parameters.
 *
 * Linux only.  Built by bench/owner.py: cc -O2 -shared -fPIC floor.c.
 */
#define _GNU_SOURCE 1

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* FDSize of /proc/thread-self/status: the size of this process's fd table. */
long floor_fd_table_size(void)
{
    char text[4096];
    const char *p;
    ssize_t n;
    int fd = open("/proc/thread-self/status", O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    text[n] = '\0';
    p = strstr(text, "\nFDSize:");
    return p ? strtol(p + 8, NULL, 10) : -1;
}

/* getsockopt(SO_COOKIE) on descriptors 0..limit-1 (limit < 0: the whole fd table). */
double floor_self_cookies(long limit, long *sockets)
{
    double t0 = now_ms();
    long fd, n = 0;

    if (limit < 0)
        limit = floor_fd_table_size();
    for (fd = 0; fd < limit; fd++) {
        unsigned long long cookie;
        socklen_t len = sizeof(cookie);
        if (getsockopt((int)fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) == 0)
            n++;
    }
    *sockets = n;
    return now_ms() - t0;
}

/* fstat() on every descriptor of the fd table (what issue 14 suggested; for reference). */
double floor_self_fstat(long *sockets)
{
    double t0 = now_ms();
    long fd, n = 0, limit = floor_fd_table_size();
    struct stat st;

    for (fd = 0; fd < limit; fd++)
        if (fstat((int)fd, &st) == 0 && S_ISSOCK(st.st_mode))
            n++;
    *sockets = n;
    return now_ms() - t0;
}

/* One readdir + readlinkat walk of a /proc/PID/fd directory; -1 if unreadable. */
static long walk_fds(int procfd, const char *pid)
{
    char path[64], link[64];
    struct dirent *e;
    long n = 0;
    DIR *d;
    int fd;

    strcpy(path, pid);
    strcat(path, "/fd");
    fd = openat(procfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (readlinkat(dirfd(d), e->d_name, link, sizeof(link)) > 0)
            n++;
    }
    closedir(d);
    return n;
}

/* The old way for our own process: readlink of every /proc/self/fd entry. */
double floor_self_readlink(long *links)
{
    double t0 = now_ms();
    int procfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (procfd < 0)
        return -1;
    *links = walk_fds(procfd, "self");
    close(procfd);
    return now_ms() - t0;
}

/*
 * Every other process: readdir of /proc and one stat of each /proc/PID; the
 * /proc/PID/fd walk (readlinkat of each entry) of those whose uid is one of
 * uids[0..nuids-1], or of every process when walk_all.  Our own process is
 * skipped (the floors above cover it).
 */
double floor_others(const unsigned *uids, int nuids, int walk_all, long *processes,
                    long *walked, long *links)
{
    double t0 = now_ms();
    long self = (long)getpid();
    struct dirent *e;
    DIR *d = opendir("/proc");

    *processes = *walked = *links = 0;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        int i, wanted = walk_all;
        long n;

        if (!isdigit((unsigned char)e->d_name[0]) || strtol(e->d_name, NULL, 10) == self)
            continue;
        (*processes)++;
        if (!walk_all) {
            if (fstatat(dirfd(d), e->d_name, &st, 0) != 0)
                continue;
            for (i = 0; i < nuids; i++)
                if (st.st_uid == uids[i])
                    wanted = 1;
        }
        if (!wanted)
            continue;
        n = walk_fds(dirfd(d), e->d_name);
        if (n >= 0) {
            (*walked)++;
            *links += n;
        }
    }
    closedir(d);
    return now_ms() - t0;
}
