/*
 * fuzz_addr.c -- libFuzzer harness for xb_addr_parse / xb_addr_format.
 *
 * Input layout (missing bytes read as 0):
 *   byte 0      bits 0-1: family (0 AF_UNSPEC, 1 AF_INET, 2 AF_INET6, 3 an invalid family)
 *               bit 2:    "raw" mode: the rest is an xb_addr to format, not text to parse
 *   bytes 1-4   port, a signed 32-bit little-endian number (range checks included)
 *   byte 5      size of the output buffer given to xb_addr_format (0..255)
 *   bytes 6-    host text (parse mode; cut at the first NUL) or raw xb_addr bytes
 *
 * Invariants (a violation traps, which libFuzzer reports as a crash):
 *   - parse success: family is IPv4/IPv6 and the one asked for, the port is the one given;
 *   - the result formats into XB_ADDRSTRLEN bytes, and the formatted host parses
 *     back to the same address, port and scope (round trip);
 *   - a short buffer either holds the exact same text or fails with "" in it;
 *   - parse failure: stage XB_STAGE_ADDRESS and a non-NULL detail.
 * ASan/UBSan catch any out-of-bounds access or undefined behaviour on the way.
 *
 * Build and run: make test-fuzz (bounded) or see docs/hardening.rst.
 */
#define _GNU_SOURCE 1
#include "xbind.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static const int families[4] = {AF_UNSPEC, AF_INET, AF_INET6, 12345};

static int same_address(const xb_addr *a, const xb_addr *b)
{
    if (a->ss.ss_family != b->ss.ss_family || a->len != b->len)
        return 0;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)&a->ss;
        const struct sockaddr_in *y = (const struct sockaddr_in *)&b->ss;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&a->ss;
    const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&b->ss;
    return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

static void check_format(const xb_addr *addr, size_t small)
{
    char full[XB_ADDRSTRLEN];
    char *buf = malloc(small ? small : 1); /* heap: ASan sees any overrun */

    REQUIRE(buf != NULL);
    int rc_full = xb_addr_format(addr, full, sizeof(full));
    int rc = xb_addr_format(addr, buf, small);
    if (rc == 0) {
        REQUIRE(rc_full == 0);
        REQUIRE(strlen(buf) < small);
        REQUIRE(strcmp(buf, full) == 0);
    } else if (small > 0) {
        REQUIRE(buf[0] == '\0');
    }
    free(buf);
    (void)xb_addr_family(addr);
    (void)xb_addr_port(addr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t head[6] = {0, 0, 0, 0, 0, 0};
    memcpy(head, data, size < 6 ? size : 6);
    const uint8_t *rest = size > 6 ? data + 6 : NULL;
    size_t rest_len = size > 6 ? size - 6 : 0;
    int family = families[head[0] & 3];
    int32_t port32 = (int32_t)((uint32_t)head[1] | (uint32_t)head[2] << 8 |
                               (uint32_t)head[3] << 16 | (uint32_t)head[4] << 24);
    long port = port32;
    size_t small = head[5];
    xb_addr addr;
    xb_error err = {XB_STAGE_NONE, 0, NULL};

    if (head[0] & 4) {
        /* Raw mode: any bytes as an address the caller might hand back to format. */
        memset(&addr, 0, sizeof(addr));
        size_t n = rest_len < sizeof(addr.ss) ? rest_len : sizeof(addr.ss);
        if (n)
            memcpy(&addr.ss, rest, n);
        addr.len = (xb_socklen)(port32 < 0 ? 0 : (size_t)port32 % (sizeof(addr.ss) + 1));
        check_format(&addr, small);
        return 0;
    }

    char *host = NULL;
    if (rest != NULL) {
        host = malloc(rest_len + 1);
        REQUIRE(host != NULL);
        memcpy(host, rest, rest_len);
        host[rest_len] = '\0';
    }
    int rc = xb_addr_parse(host, port, family, &addr, &err);
    if (rc != 0) {
        REQUIRE(rc == -1 && err.stage == XB_STAGE_ADDRESS && err.detail != NULL);
        free(host);
        return 0;
    }
    int got = xb_addr_family(&addr);
    REQUIRE(got == AF_INET || got == AF_INET6);
    REQUIRE(family == AF_UNSPEC || got == family);
    REQUIRE(port >= 0 && port <= 65535 && xb_addr_port(&addr) == port);

    /* Round trip: format, strip "[...]" and ":port", parse again, compare. */
    char text[XB_ADDRSTRLEN];
    REQUIRE(xb_addr_format(&addr, text, sizeof(text)) == 0);
    char *colon = strrchr(text, ':');
    REQUIRE(colon != NULL);
    *colon = '\0';
    char *h = text;
    if (got == AF_INET6) {
        REQUIRE(text[0] == '[' && colon > text && colon[-1] == ']');
        colon[-1] = '\0';
        h = text + 1;
    }
    xb_addr again;
    REQUIRE(xb_addr_parse(h, port, got, &again, &err) == 0);
    REQUIRE(same_address(&addr, &again));
    check_format(&addr, small);
    free(host);
    return 0;
}
