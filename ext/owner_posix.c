/*
 * owner_posix.c -- what the POSIX owner backends (owner_linux.c,
 * owner_darwin.c) share: the user name of a uid, for one uid or a list.
 *
 * Not built on Windows (no getpwuid_r there; owner_win32.c names the user
 * from the process token) nor with owner_none.c.
 */
#if defined(__APPLE__)
#  ifndef _DARWIN_C_SOURCE
#    define _DARWIN_C_SOURCE 1
#  endif
#elif !defined(_GNU_SOURCE)
#  define _GNU_SOURCE 1 /* getpwuid_r, _SC_GETPW_R_SIZE_MAX under -std=c11 */
#endif
#include "xbind.h"

#include <errno.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* getpwuid_r's buffer grows by doubling up to this size (an entry larger
 * than 1 MiB is treated as "no name"). */
#define XB_PW_BUF_MAX (1u << 20)

int xb_owner_user_name(long long uid, char *user, size_t len, xb_error *err)
{
    struct passwd pw, *result = NULL;
    long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
    size_t size = hint > 0 ? (size_t)hint : 4096;
    char *buf = NULL;
    int rc;

    if (user == NULL || len == 0)
        return xb_fail(err, XB_STAGE_OWNER, EINVAL, "xb_owner_user_name");
    user[0] = '\0';
    if (uid < 0 || (unsigned long long)uid > (unsigned long long)(uid_t)-1)
        return 0;
    for (;;) {
        char *bigger = (char *)realloc(buf, size);
        if (bigger == NULL) {
            free(buf);
            return xb_fail(err, XB_STAGE_OWNER, ENOMEM, "getpwuid_r buffer");
        }
        buf = bigger;
        rc = getpwuid_r((uid_t)uid, &pw, buf, size, &result);
        if (rc == ERANGE && size < XB_PW_BUF_MAX) {
            size *= 2;
            continue;
        }
        break;
    }
    if (rc == ENOMEM) {
        free(buf);
        return xb_fail(err, XB_STAGE_OWNER, ENOMEM, "getpwuid_r");
    }
    /* Any other failure, or no such user: the name is unknown, the uid stays. */
    if (rc == 0 && result != NULL && result->pw_name != NULL) {
        size_t n = strlen(result->pw_name);
        if (n >= len)
            n = len - 1;
        memcpy(user, result->pw_name, n);
        user[n] = '\0';
    }
    free(buf);
    return 0;
}

int xb_owner_fill_users(xb_listeners *list, xb_error *err)
{
    size_t i, j;

    for (i = 0; i < list->count; i++) {
        xb_listener *item = &list->items[i];
        for (j = 0; j < i; j++) {
            if (list->items[j].uid == item->uid) {
                memcpy(item->user, list->items[j].user, sizeof(item->user));
                break;
            }
        }
        if (j == i && xb_owner_user_name(item->uid, item->user, sizeof(item->user), err) != 0)
            return -1;
    }
    return 0;
}
