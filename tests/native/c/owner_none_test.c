/* owner_none_test.c -- the "not supported on this OS" implementation says so. */
#include "xbind.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    xb_listeners list = {NULL, 0, 0};
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    long long uid = 5;
    char user[8] = "x";

    if (xb_owner_listeners(80, 0, &list, &err) != -1 || err.stage != XB_STAGE_OWNER ||
        err.code != ENOSYS || strcmp(err.detail, "owner lookup is not supported on this OS") != 0 ||
        list.items != NULL)
        return 1;
    if (xb_owner_process_user(1, &uid, user, sizeof(user), &err) != -1 || uid != -1 || user[0])
        return 1;
    if (strcmp(xb_owner_backend, "none") != 0)
        return 1;
    printf("%s\n", err.detail);
    return 0;
}
