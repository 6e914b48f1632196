/*
 * xbfault.c -- fault-injection shim for the C core's libc calls.  See xbfault.h.
 *
 * Build as a preload library:
 *     cc -shared -fPIC -O1 -o libxbfault.so xbfault.c -ldl
 * or link it into a C test program together with the core's sources.
 *
 * Caller filtering uses backtrace(): with ASan preloaded, libasan's
 * interceptor sits between the core and this shim, so the immediate return
 * address is not enough; the first frames are searched instead.
 */
#define _GNU_SOURCE 1
#include "xbfault.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* ---- the calls we know ------------------------------------------------ */

enum call {
    C_SOCKET, C_SETSOCKOPT, C_GETSOCKOPT, C_FCNTL, C_BIND, C_LISTEN, C_GETSOCKNAME, C_CLOSE,
    C_GETADDRINFO, C_GETNAMEINFO,
    C_SEND, C_SENDTO, C_SENDMSG, C_RECV, C_RECVFROM, C_RECVMSG,
    C_OPEN, C_OPENAT, C_FOPEN, C_OPENDIR, C_READDIR, C_READLINK, C_READLINKAT, C_READ,
    C_FSTATAT,
    C_COUNT
};

static const char *const call_names[C_COUNT] = {
    "socket", "setsockopt", "getsockopt", "fcntl", "bind", "listen", "getsockname", "close",
    "getaddrinfo", "getnameinfo",
    "send", "sendto", "sendmsg", "recv", "recvfrom", "recvmsg",
    "open", "openat", "fopen", "opendir", "readdir", "readlink", "readlinkat", "read",
    "fstatat",
};

static int call_index(const char *name, size_t len)
{
    for (int i = 0; i < C_COUNT; i++)
        if (strlen(call_names[i]) == len && strncmp(call_names[i], name, len) == 0)
            return i;
    return -1;
}

struct name_value { const char *name; int value; };

static const struct name_value errno_names[] = {
    {"EACCES", EACCES}, {"EADDRINUSE", EADDRINUSE}, {"EADDRNOTAVAIL", EADDRNOTAVAIL},
    {"EAFNOSUPPORT", EAFNOSUPPORT}, {"EAGAIN", EAGAIN}, {"EBADF", EBADF}, {"EBUSY", EBUSY},
    {"ECONNREFUSED", ECONNREFUSED}, {"EDEADLK", EDEADLK}, {"EDQUOT", EDQUOT},
    {"EFAULT", EFAULT}, {"EINTR", EINTR}, {"EINVAL", EINVAL}, {"EIO", EIO},
    {"ELOOP", ELOOP}, {"EMFILE", EMFILE}, {"ENAMETOOLONG", ENAMETOOLONG}, {"ENFILE", ENFILE},
    {"ENOBUFS", ENOBUFS}, {"ENOENT", ENOENT}, {"ENOLCK", ENOLCK}, {"ENOMEM", ENOMEM},
    {"ENOPROTOOPT", ENOPROTOOPT}, {"ENOSPC", ENOSPC}, {"ENOTDIR", ENOTDIR},
    {"ENOTSOCK", ENOTSOCK}, {"EOPNOTSUPP", EOPNOTSUPP}, {"EOVERFLOW", EOVERFLOW}, {"EPERM", EPERM},
    {"EPROTONOSUPPORT", EPROTONOSUPPORT}, {"ESRCH", ESRCH}, {"ETIMEDOUT", ETIMEDOUT},
    {"ECONNRESET", ECONNRESET}, {"EMSGSIZE", EMSGSIZE}, {"ENOTCONN", ENOTCONN},
    {"EAI_AGAIN", EAI_AGAIN}, {"EAI_BADFLAGS", EAI_BADFLAGS}, {"EAI_FAIL", EAI_FAIL},
    {"EAI_FAMILY", EAI_FAMILY}, {"EAI_MEMORY", EAI_MEMORY}, {"EAI_NONAME", EAI_NONAME},
    {"EAI_OVERFLOW", EAI_OVERFLOW}, {"EAI_SERVICE", EAI_SERVICE}, {"EAI_SOCKTYPE", EAI_SOCKTYPE},
    {"EAI_SYSTEM", EAI_SYSTEM},
    {NULL, 0}
};

static int parse_errno(const char *text, size_t len, int *out)
{
    char buf[32];
    char *end;

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, text, len);
    buf[len] = '\0';
    for (const struct name_value *p = errno_names; p->name; p++) {
        if (strcmp(p->name, buf) == 0) {
            *out = p->value;
            return 0;
        }
    }
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (errno != 0 || *end != '\0' || v < -100000 || v > 100000)
        return -1;
    *out = (int)v;
    return 0;
}

/* ---- rules ------------------------------------------------------------ */

#define MAX_RULES 16

struct rule {
    int call;
    int err;
    long skip;   /* matching calls still to let through */
    long times;  /* failures still to inject; -1 = unlimited */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct rule rules[MAX_RULES];
static int nrules;
static unsigned armed_mask;  /* bit per call with at least one live rule */
static long injected;
static char caller_filter[256];
static __thread int in_shim;  /* our own helpers (backtrace, dladdr) may call libc */

static void recompute_mask(void)
{
    armed_mask = 0;
    for (int i = 0; i < nrules; i++)
        if (rules[i].times != 0)
            armed_mask |= 1u << rules[i].call;
}

int xbfault_add(const char *call, int err, long skip, long times)
{
    int idx = call ? call_index(call, strlen(call)) : -1;
    int rc = -1;

    if (idx < 0)
        return -1;
    pthread_mutex_lock(&lock);
    if (nrules < MAX_RULES) {
        rules[nrules].call = idx;
        rules[nrules].err = err;
        rules[nrules].skip = skip < 0 ? 0 : skip;
        rules[nrules].times = times;
        nrules++;
        recompute_mask();
        rc = 0;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

int xbfault_config(const char *spec)
{
    struct rule parsed[MAX_RULES];
    int n = 0;
    const char *p = spec;

    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *fields[4] = {NULL, NULL, NULL, NULL};
        size_t flen[4] = {0, 0, 0, 0};
        int nf = 0;
        const char *q = p;

        if (n >= MAX_RULES)
            return -1;
        while (nf < 4) {
            const char *colon = memchr(q, ':', (size_t)(p + len - q));
            fields[nf] = q;
            flen[nf] = colon ? (size_t)(colon - q) : (size_t)(p + len - q);
            nf++;
            if (!colon)
                break;
            q = colon + 1;
        }
        if (nf < 2)
            return -1;
        int idx = call_index(fields[0], flen[0]);
        if (idx < 0 || parse_errno(fields[1], flen[1], &parsed[n].err) != 0)
            return -1;
        parsed[n].call = idx;
        parsed[n].skip = 0;
        parsed[n].times = 1;
        for (int f = 2; f < nf; f++) {
            char buf[32], *e;
            if (flen[f] == 0 || flen[f] >= sizeof(buf))
                return -1;
            memcpy(buf, fields[f], flen[f]);
            buf[flen[f]] = '\0';
            long v = strtol(buf, &e, 10);
            if (*e != '\0')
                return -1;
            if (f == 2)
                parsed[n].skip = v < 0 ? 0 : v;
            else
                parsed[n].times = v;
        }
        n++;
        p = end ? end + 1 : NULL;
    }
    pthread_mutex_lock(&lock);
    memcpy(rules, parsed, sizeof(parsed[0]) * (size_t)n);
    nrules = n;
    injected = 0;
    recompute_mask();
    pthread_mutex_unlock(&lock);
    return n;
}

void xbfault_caller(const char *substring)
{
    pthread_mutex_lock(&lock);
    if (substring == NULL)
        caller_filter[0] = '\0';
    else
        snprintf(caller_filter, sizeof(caller_filter), "%s", substring);
    pthread_mutex_unlock(&lock);
}

long xbfault_injected(void)
{
    pthread_mutex_lock(&lock);
    long n = injected;
    pthread_mutex_unlock(&lock);
    return n;
}

/* Is any of the first frames (after this shim's own) inside an object whose
 * path contains the caller filter? */
static int caller_matches(void)
{
    void *frames[12];
    Dl_info info;
    int n;

    if (caller_filter[0] == '\0')
        return 1;
    n = backtrace(frames, 12);
    for (int i = 1; i < n; i++) {
        if (dladdr(frames[i], &info) == 0 || info.dli_fname == NULL)
            continue;
        if (strstr(info.dli_fname, "libxbfault") != NULL)
            continue;
        if (strstr(info.dli_fname, caller_filter) != NULL)
            return 1;
    }
    return 0;
}

/* 0: let the call through; otherwise the errno to fail with. */
static int should_fail(int call, int *err)
{
    int fail = 0;

    if (!(__atomic_load_n(&armed_mask, __ATOMIC_RELAXED) & (1u << call)) || in_shim)
        return 0;
    in_shim = 1;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < nrules; i++) {
        struct rule *r = &rules[i];
        if (r->call != call || r->times == 0)
            continue;
        if (!caller_matches())
            break;
        if (r->skip > 0) {
            r->skip--;
            continue;
        }
        if (r->times > 0)
            r->times--;
        *err = r->err;
        injected++;
        fail = 1;
        recompute_mask();
        break;
    }
    pthread_mutex_unlock(&lock);
    in_shim = 0;
    return fail;
}

__attribute__((constructor)) static void xbfault_init(void)
{
    void *frames[2];

    in_shim = 1;
    (void)backtrace(frames, 2); /* loads libgcc_s now, not inside an intercepted call */
    in_shim = 0;
    const char *caller = getenv("XBFAULT_CALLER");
    if (caller)
        xbfault_caller(caller);
    const char *spec = getenv("XBFAULT");
    if (spec && xbfault_config(spec) < 0) {
        fprintf(stderr, "xbfault: malformed XBFAULT=%s\n", spec);
        abort();
    }
}

/* ---- the wrappers ------------------------------------------------------ */

#define REAL(type, name, args)                                                  \
    static type(*real_##name) args;                                             \
    if (real_##name == NULL) {                                                  \
        *(void **)(&real_##name) = dlsym(RTLD_NEXT, #name);                     \
        if (real_##name == NULL) {                                              \
            fprintf(stderr, "xbfault: no next %s\n", #name);                    \
            abort();                                                            \
        }                                                                       \
    }

#define FAIL_IF(callid, failvalue)                                              \
    do {                                                                        \
        int e_;                                                                 \
        if (should_fail(callid, &e_)) {                                         \
            errno = e_;                                                         \
            return failvalue;                                                   \
        }                                                                       \
    } while (0)

int socket(int domain, int type, int protocol)
{
    REAL(int, socket, (int, int, int));
    FAIL_IF(C_SOCKET, -1);
    return real_socket(domain, type, protocol);
}

int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
{
    REAL(int, setsockopt, (int, int, int, const void *, socklen_t));
    FAIL_IF(C_SETSOCKOPT, -1);
    return real_setsockopt(fd, level, name, value, len);
}

int getsockopt(int fd, int level, int name, void *value, socklen_t *len)
{
    REAL(int, getsockopt, (int, int, int, void *, socklen_t *));
    FAIL_IF(C_GETSOCKOPT, -1);
    return real_getsockopt(fd, level, name, value, len);
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    REAL(int, bind, (int, const struct sockaddr *, socklen_t));
    FAIL_IF(C_BIND, -1);
    return real_bind(fd, addr, len);
}

int listen(int fd, int backlog)
{
    REAL(int, listen, (int, int));
    FAIL_IF(C_LISTEN, -1);
    return real_listen(fd, backlog);
}

int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
{
    REAL(int, getsockname, (int, struct sockaddr *, socklen_t *));
    FAIL_IF(C_GETSOCKNAME, -1);
    return real_getsockname(fd, addr, len);
}

int close(int fd)
{
    int e;
    REAL(int, close, (int));
    if (should_fail(C_CLOSE, &e)) {
        (void)real_close(fd); /* Linux releases the descriptor even when close() fails */
        errno = e;
        return -1;
    }
    return real_close(fd);
}

static int fcntl_common(int (*real)(int, int, ...), int fd, int cmd, va_list ap)
{
    void *arg = va_arg(ap, void *); /* what glibc does: every argument fits a pointer */
    FAIL_IF(C_FCNTL, -1);
    return real(fd, cmd, arg);
}

int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    int rc;
    REAL(int, fcntl, (int, int, ...));
    va_start(ap, cmd);
    rc = fcntl_common(real_fcntl, fd, cmd, ap);
    va_end(ap);
    return rc;
}

int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    int rc;
    REAL(int, fcntl64, (int, int, ...));
    va_start(ap, cmd);
    rc = fcntl_common(real_fcntl64, fd, cmd, ap);
    va_end(ap);
    return rc;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    int e;
    REAL(int, getaddrinfo, (const char *, const char *, const struct addrinfo *,
                            struct addrinfo **));
    if (should_fail(C_GETADDRINFO, &e)) {
        if (e > 0) { /* a plain errno: EAI_SYSTEM with that errno */
            errno = e;
            return EAI_SYSTEM;
        }
        return e;
    }
    return real_getaddrinfo(node, service, hints, res);
}

int getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen,
                char *serv, socklen_t servlen, int flags)
{
    int e;
    REAL(int, getnameinfo, (const struct sockaddr *, socklen_t, char *, socklen_t, char *,
                            socklen_t, int));
    if (should_fail(C_GETNAMEINFO, &e)) {
        if (e > 0) {
            errno = e;
            return EAI_SYSTEM;
        }
        return e;
    }
    return real_getnameinfo(sa, salen, host, hostlen, serv, servlen, flags);
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    REAL(ssize_t, send, (int, const void *, size_t, int));
    FAIL_IF(C_SEND, -1);
    return real_send(fd, buf, len, flags);
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to,
               socklen_t tolen)
{
    REAL(ssize_t, sendto, (int, const void *, size_t, int, const struct sockaddr *, socklen_t));
    FAIL_IF(C_SENDTO, -1);
    return real_sendto(fd, buf, len, flags, to, tolen);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    REAL(ssize_t, sendmsg, (int, const struct msghdr *, int));
    FAIL_IF(C_SENDMSG, -1);
    return real_sendmsg(fd, msg, flags);
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    REAL(ssize_t, recv, (int, void *, size_t, int));
    FAIL_IF(C_RECV, -1);
    return real_recv(fd, buf, len, flags);
}

ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from,
                 socklen_t *fromlen)
{
    REAL(ssize_t, recvfrom, (int, void *, size_t, int, struct sockaddr *, socklen_t *));
    FAIL_IF(C_RECVFROM, -1);
    return real_recvfrom(fd, buf, len, flags, from, fromlen);
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    REAL(ssize_t, recvmsg, (int, struct msghdr *, int));
    FAIL_IF(C_RECVMSG, -1);
    return real_recvmsg(fd, msg, flags);
}

static mode_t open_mode(int flags, va_list ap)
{
    if ((flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE)
        return (mode_t)va_arg(ap, int);
    return 0;
}

#define OPEN_WRAPPER(name)                                                      \
    int name(const char *path, int flags, ...)                                  \
    {                                                                           \
        va_list ap;                                                             \
        mode_t mode;                                                            \
        REAL(int, name, (const char *, int, ...));                              \
        va_start(ap, flags);                                                    \
        mode = open_mode(flags, ap);                                            \
        va_end(ap);                                                             \
        FAIL_IF(C_OPEN, -1);                                                    \
        return real_##name(path, flags, mode);                                  \
    }
OPEN_WRAPPER(open)
OPEN_WRAPPER(open64)

#define OPENAT_WRAPPER(name)                                                    \
    int name(int dirfd, const char *path, int flags, ...)                       \
    {                                                                           \
        va_list ap;                                                             \
        mode_t mode;                                                            \
        REAL(int, name, (int, const char *, int, ...));                         \
        va_start(ap, flags);                                                    \
        mode = open_mode(flags, ap);                                            \
        va_end(ap);                                                             \
        FAIL_IF(C_OPENAT, -1);                                                  \
        return real_##name(dirfd, path, flags, mode);                           \
    }
OPENAT_WRAPPER(openat)
OPENAT_WRAPPER(openat64)

/* _FORTIFY_SOURCE builds call these for open()/openat() without a mode. */
int __open_2(const char *path, int flags)
{
    REAL(int, __open_2, (const char *, int));
    FAIL_IF(C_OPEN, -1);
    return real___open_2(path, flags);
}

int __open64_2(const char *path, int flags)
{
    REAL(int, __open64_2, (const char *, int));
    FAIL_IF(C_OPEN, -1);
    return real___open64_2(path, flags);
}

int __openat_2(int dirfd, const char *path, int flags)
{
    REAL(int, __openat_2, (int, const char *, int));
    FAIL_IF(C_OPENAT, -1);
    return real___openat_2(dirfd, path, flags);
}

FILE *fopen(const char *path, const char *mode)
{
    REAL(FILE *, fopen, (const char *, const char *));
    FAIL_IF(C_FOPEN, NULL);
    return real_fopen(path, mode);
}

FILE *fopen64(const char *path, const char *mode)
{
    REAL(FILE *, fopen64, (const char *, const char *));
    FAIL_IF(C_FOPEN, NULL);
    return real_fopen64(path, mode);
}

DIR *opendir(const char *path)
{
    REAL(DIR *, opendir, (const char *));
    FAIL_IF(C_OPENDIR, NULL);
    return real_opendir(path);
}

struct dirent *readdir(DIR *dir)
{
    REAL(struct dirent *, readdir, (DIR *));
    FAIL_IF(C_READDIR, NULL);
    return real_readdir(dir);
}

struct dirent64 *readdir64(DIR *dir)
{
    REAL(struct dirent64 *, readdir64, (DIR *));
    FAIL_IF(C_READDIR, NULL);
    return real_readdir64(dir);
}

ssize_t readlink(const char *path, char *buf, size_t len)
{
    REAL(ssize_t, readlink, (const char *, char *, size_t));
    FAIL_IF(C_READLINK, -1);
    return real_readlink(path, buf, len);
}

ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t len)
{
    REAL(ssize_t, readlinkat, (int, const char *, char *, size_t));
    FAIL_IF(C_READLINKAT, -1);
    return real_readlinkat(dirfd, path, buf, len);
}

int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
    REAL(int, fstatat, (int, const char *, struct stat *, int));
    FAIL_IF(C_FSTATAT, -1);
    return real_fstatat(dirfd, path, st, flags);
}

int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
    REAL(int, fstatat64, (int, const char *, struct stat64 *, int));
    FAIL_IF(C_FSTATAT, -1);
    return real_fstatat64(dirfd, path, st, flags);
}

ssize_t read(int fd, void *buf, size_t len)
{
    REAL(ssize_t, read, (int, void *, size_t));
    FAIL_IF(C_READ, -1);
    return real_read(fd, buf, len);
}
