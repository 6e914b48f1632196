/*
 * startup_fails.c -- xb_startup() failing as WSAStartup() can on Windows.
 *
 * On POSIX xb_startup() makes no call that the LD_PRELOAD shim (xbfault.c)
 * could fail, so tests/test_native_init.py links this stand-in into a test
 * build of the extension instead (xbind_posix.c's own xb_startup renamed
 * away with -Dxb_startup=...): the module's failure path at import becomes
 * reachable with every other file of the real core.
 */
#include "xbind.h"

#include <errno.h>

int xb_startup(xb_error *err)
{
    return xb_fail(err, XB_STAGE_INIT, ENOBUFS, "WSAStartup");
}
