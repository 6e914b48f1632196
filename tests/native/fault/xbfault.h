/*
 * xbfault.h -- control interface of the fault-injection shim (xbfault.c).
 *
 * The shim replaces the libc calls the core makes (socket, setsockopt,
 * getsockopt, fcntl, bind, listen, getsockname, close, getaddrinfo,
 * getnameinfo; and for the owner lookup: send/sendto/sendmsg, recv/recvfrom/
 * recvmsg, open/openat/fopen, opendir/readdir, readlink, read, fstatat).  A call
 * passes straight through to libc unless a rule for it is armed; an armed
 * rule makes the call return its failure value with the rule's errno.
 *
 * Two ways to use it, no change to the core either way:
 *   - LD_PRELOAD=tests/native/fault/build/libxbfault.so (Python tests: the shim is
 *     found by ctypes.CDLL(path) in the preloaded process), or
 *   - linked into a C test program (tests/native/c/test_core_faults.c), where its
 *     definitions interpose on libc's for the core compiled into the program.
 *
 * Rule text (environment variable XBFAULT, or xbfault_config()):
 *     CALL:ERRNO[:SKIP[:TIMES]][,CALL:ERRNO...]
 * CALL is a function name from the list above; ERRNO a name ("EMFILE",
 * "EAI_MEMORY" for getaddrinfo/getnameinfo) or a number; SKIP how many matching
 * calls pass first (default 0); TIMES how many calls then fail (default 1,
 * -1 = every later call).  XBFAULT_CALLER=SUBSTRING (or xbfault_caller())
 * restricts rules to calls made from a shared object whose path contains
 * SUBSTRING (e.g. "_native"): Python's own socket module is never hit.
 *
 * close() is special: like Linux's close() on EINTR/EIO, an injected close
 * failure still releases the descriptor, then returns -1 with the errno.
 */
#ifndef TWISTED_PATCH_XBFAULT_H
#define TWISTED_PATCH_XBFAULT_H

#ifdef __cplusplus
extern "C" {
#endif

/* Replace every rule by those in `spec` (NULL or "" disarms all).
 * Returns the number of rules, or -1 if spec is malformed (nothing armed then). */
int xbfault_config(const char *spec);

/* Arm one more rule programmatically (errno as a number). Returns 0 or -1 (table full / unknown call). */
int xbfault_add(const char *call, int err, long skip, long times);

/* Only fail calls made from an object whose path contains `substring` (NULL: any caller). */
void xbfault_caller(const char *substring);

/* Total failures injected since start (or the last xbfault_config). */
long xbfault_injected(void);

#ifdef __cplusplus
}
#endif

#endif
