/*
 * fuzz_owner_netlink.c -- libFuzzer harness for the Linux owner lookup's
 * NETLINK_SOCK_DIAG reply parser, fed arbitrary bytes in place of the kernel's
 * reply (ext/owner_linux.c, xb_owner_parse_diag() in ext/xbind.h).
 *
 * fuzz-requires (make test-fuzz skips this harness until the symbol exists):
// fuzz-requires: xb_owner_parse_diag
 *
 * Input layout (missing bytes read as 0):
 *   bytes 0-1   port filter, little-endian; 0xFFFF means -1 (keep every port)
 *   bytes 2-5   the sequence number the parser expects, little-endian
 *   byte  6     where to split the rest into two recv() buffers (0: one buffer)
 *   bytes 7-    the reply bytes
 *
 * Invariants (a violation traps):
 *   - the result is -1, 0 or 1; on -1 the error is XB_STAGE_OWNER with a detail;
 *   - every listener appended is AF_INET/AF_INET6 with a NUL-terminated numeric
 *     host that parses back (xb_addr_parse), a port that matches the filter, a
 *     v6only of -1 for IPv4 and -1/0/1 for IPv6;
 *   - no more listeners than the bytes could describe (one netlink header plus one
 *     inet_diag_msg each); the list is freed without leaks (ASan's LeakSanitizer).
 * ASan/UBSan catch any read outside the buffer.
 */
#define _GNU_SOURCE 1
#include "xbind.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __linux__
#include <linux/inet_diag.h>
#include <linux/netlink.h>

#define REQUIRE(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static void check_list(const xb_listeners *list, size_t from, int port)
{
    for (size_t i = from; i < list->count; i++) {
        const xb_listener *l = &list->items[i];
        xb_addr a;
        xb_error e;
        REQUIRE(l->family == AF_INET || l->family == AF_INET6);
        REQUIRE(memchr(l->host, '\0', sizeof(l->host)) != NULL && l->host[0] != '\0');
        REQUIRE(xb_addr_parse(l->host, l->port, l->family, &a, &e) == 0);
        REQUIRE(l->port >= 0 && l->port <= 65535);
        REQUIRE(port < 0 || l->port == port);
        if (l->family == AF_INET)
            REQUIRE(l->v6only == -1);
        else
            REQUIRE(l->v6only >= -1 && l->v6only <= 1);
    }
}

static int parse(const uint8_t *buf, size_t len, unsigned seq, int port, xb_listeners *list)
{
    /* A heap copy of exactly len bytes: ASan sees any read past the end. */
    uint8_t *copy = malloc(len ? len : 1);
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    size_t before = list->count;

    REQUIRE(copy != NULL);
    if (len)
        memcpy(copy, buf, len);
    int rc = xb_owner_parse_diag(copy, len, seq, port, list, &err);
    free(copy);
    REQUIRE(rc == -1 || rc == 0 || rc == 1);
    if (rc == -1)
        REQUIRE(err.stage == XB_STAGE_OWNER && err.detail != NULL);
    REQUIRE(list->count >= before);
    REQUIRE(list->count - before <= len / (NLMSG_HDRLEN + sizeof(struct inet_diag_msg)));
    check_list(list, before, port);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t head[7] = {0, 0, 0, 0, 0, 0, 0};
    memcpy(head, data, size < 7 ? size : 7);
    const uint8_t *rest = size > 7 ? data + 7 : NULL;
    size_t rest_len = size > 7 ? size - 7 : 0;
    unsigned port16 = (unsigned)head[0] | (unsigned)head[1] << 8;
    int port = port16 == 0xFFFF ? -1 : (int)port16;
    unsigned seq = (unsigned)head[2] | (unsigned)head[3] << 8 | (unsigned)head[4] << 16 |
                   (unsigned)head[5] << 24;
    size_t split = head[6] && rest_len ? (size_t)head[6] % (rest_len + 1) : 0;
    xb_listeners list;

    memset(&list, 0, sizeof(list));
    if (split == 0) {
        (void)parse(rest, rest_len, seq, port, &list);
    } else if (parse(rest, split, seq, port, &list) == 0) {
        /* More to come: the second buffer appends to the same list. */
        (void)parse(rest + split, rest_len - split, seq, port, &list);
    }
    xb_listeners_free(&list);
    REQUIRE(list.count == 0 && list.items == NULL);
    xb_listeners_free(&list); /* idempotent */
    return 0;
}
#else
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)data;
    (void)size;
    return 0;
}
#endif
