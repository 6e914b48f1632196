/*
 * owner_parse_test.c -- the Linux sock_diag reply parser, without a kernel.
 *
 * Built by tests/test_owner_c.py with -fsanitize=address,undefined: crafted
 * replies (valid, truncated, lying lengths, kernel errors, misaligned) and
 * many pseudo-random mutations of a valid reply.  Any out-of-bounds read is
 * a sanitizer abort; wrong answers are assertion failures (exit 1).
 */
#define _GNU_SOURCE 1
#include "xbind.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEQ 0x1234u
static int failures;

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                     \
        }                                                                   \
    } while (0)

/* Append one SOCK_DIAG_BY_FAMILY message (plus optional v6only attribute). */
static size_t put_diag(unsigned char *buf, size_t off, int family, const char *host, int port,
                       int state, unsigned uid, unsigned inode, int v6only)
{
    struct nlmsghdr h;
    struct inet_diag_msg m;
    size_t len = NLMSG_LENGTH(sizeof(m));

    memset(&m, 0, sizeof(m));
    m.idiag_family = (unsigned char)family;
    m.idiag_state = (unsigned char)state;
    m.id.idiag_sport = htons((unsigned short)port);
    inet_pton(family, host, m.id.idiag_src);
    m.idiag_uid = uid;
    m.idiag_inode = inode;
    if (v6only >= 0)
        len = NLMSG_ALIGN(len) + NLA_HDRLEN + 1;
    memset(&h, 0, sizeof(h));
    h.nlmsg_len = (unsigned)len;
    h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    h.nlmsg_flags = NLM_F_MULTI;
    h.nlmsg_seq = SEQ;
    memcpy(buf + off, &h, sizeof(h));
    memcpy(buf + off + NLMSG_HDRLEN, &m, sizeof(m));
    if (v6only >= 0) {
        struct nlattr a;
        a.nla_len = NLA_HDRLEN + 1;
        a.nla_type = INET_DIAG_SKV6ONLY;
        memcpy(buf + off + NLMSG_ALIGN(NLMSG_LENGTH(sizeof(m))), &a, sizeof(a));
        buf[off + NLMSG_ALIGN(NLMSG_LENGTH(sizeof(m))) + NLA_HDRLEN] = (unsigned char)v6only;
    }
    return off + NLMSG_ALIGN(len);
}

static size_t put_done(unsigned char *buf, size_t off)
{
    struct nlmsghdr h;
    int zero = 0;

    memset(&h, 0, sizeof(h));
    h.nlmsg_len = NLMSG_LENGTH(sizeof(int));
    h.nlmsg_type = NLMSG_DONE;
    h.nlmsg_seq = SEQ;
    memcpy(buf + off, &h, sizeof(h));
    memcpy(buf + off + NLMSG_HDRLEN, &zero, sizeof(zero));
    return off + NLMSG_ALIGN(h.nlmsg_len);
}

static size_t put_error(unsigned char *buf, size_t off, int error)
{
    struct nlmsghdr h;
    struct nlmsgerr e;

    memset(&h, 0, sizeof(h));
    memset(&e, 0, sizeof(e));
    h.nlmsg_len = NLMSG_LENGTH(sizeof(e));
    h.nlmsg_type = NLMSG_ERROR;
    h.nlmsg_seq = SEQ;
    e.error = error;
    memcpy(buf + off, &h, sizeof(h));
    memcpy(buf + off + NLMSG_HDRLEN, &e, sizeof(e));
    return off + NLMSG_ALIGN(h.nlmsg_len);
}

/* Parse a copy of buf[0..len) in an exactly-sized heap block (so ASan sees overreads). */
static int parse(const unsigned char *buf, size_t len, int port, xb_listeners *out, xb_error *err)
{
    unsigned char *copy = malloc(len ? len : 1);
    int rc;

    if (copy == NULL)
        abort();
    memcpy(copy, buf, len);
    rc = xb_owner_parse_diag(copy, len, SEQ, port, out, err);
    free(copy);
    return rc;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

int main(void)
{
    /* zeroed: the alignment padding put_diag() skips must not be uninitialised bytes
       that a mutated length makes the parser read (valgrind: make test-valgrind) */
    unsigned char buf[4096] = {0}, mutated[4096] = {0};
    size_t len, i;
    xb_listeners out = {NULL, 0, 0};
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    int rc, round;
    long long accepted = 0, rejected = 0;

    /* 1. a valid reply: two listeners on 3456, one on another port, one not listening */
    len = put_diag(buf, 0, AF_INET, "127.0.0.1", 3456, 10, 1000, 77, -1);
    len = put_diag(buf, len, AF_INET6, "::1", 3456, 10, 0, 78, 1);
    len = put_diag(buf, len, AF_INET, "127.0.0.1", 3457, 10, 0, 79, -1);
    len = put_diag(buf, len, AF_INET, "127.0.0.1", 3456, 1 /* ESTABLISHED */, 0, 80, -1);
    rc = parse(buf, len, 3456, &out, &err);
    CHECK(rc == 0);
    CHECK(out.count == 2);
    if (out.count == 2) {
        CHECK(strcmp(out.items[0].host, "127.0.0.1") == 0 && out.items[0].port == 3456);
        CHECK(out.items[0].uid == 1000 && out.items[0].inode == 77 && out.items[0].v6only == -1);
        CHECK(strcmp(out.items[1].host, "::1") == 0 && out.items[1].v6only == 1);
        CHECK(out.items[1].npids == 0);
    }
    xb_listeners_free(&out);
    CHECK(out.items == NULL && out.count == 0);

    /* 2. NLMSG_DONE ends the dump */
    len = put_diag(buf, 0, AF_INET, "0.0.0.0", 80, 10, 0, 1, -1);
    len = put_done(buf, len);
    CHECK(parse(buf, len, 80, &out, &err) == 1 && out.count == 1);
    xb_listeners_free(&out);

    /* 3. a kernel error reply becomes its errno */
    len = put_error(buf, 0, -EPERM);
    CHECK(parse(buf, len, 80, &out, &err) == -1 && err.code == EPERM &&
          err.stage == XB_STAGE_OWNER);
    len = put_error(buf, 0, 0); /* an ACK: nothing, not done */
    CHECK(parse(buf, len, 80, &out, &err) == 0 && out.count == 0);
    len = put_error(buf, 0, 5); /* positive: nonsense */
    CHECK(parse(buf, len, 80, &out, &err) == -1 && err.code == EBADMSG);
    /* short error message */
    len = put_error(buf, 0, -EPERM);
    {
        struct nlmsghdr h;
        memcpy(&h, buf, sizeof(h));
        h.nlmsg_len = NLMSG_HDRLEN + 2;
        memcpy(buf, &h, sizeof(h));
    }
    CHECK(parse(buf, NLMSG_HDRLEN + 4, 80, &out, &err) == -1 && err.code == EBADMSG);

    /* 4. lying lengths, truncation, wrong sequence number */
    len = put_diag(buf, 0, AF_INET, "127.0.0.1", 80, 10, 0, 1, -1);
    for (i = 0; i < len; i++) {
        rc = parse(buf, i, 80, &out, &err);
        CHECK(i == 0 ? rc == 0 : rc == -1); /* every strict prefix is malformed */
        xb_listeners_free(&out);
    }
    {
        struct nlmsghdr h;
        memcpy(&h, buf, sizeof(h));
        h.nlmsg_len = (unsigned)len + 4; /* longer than the buffer */
        memcpy(mutated, buf, len);
        memcpy(mutated, &h, sizeof(h));
        CHECK(parse(mutated, len, 80, &out, &err) == -1 && err.code == EBADMSG);
        h.nlmsg_len = 8; /* shorter than a header */
        memcpy(mutated, &h, sizeof(h));
        CHECK(parse(mutated, len, 80, &out, &err) == -1);
        h.nlmsg_len = 0xFFFFFFFFu;
        memcpy(mutated, &h, sizeof(h));
        CHECK(parse(mutated, len, 80, &out, &err) == -1);
        h.nlmsg_len = (unsigned)len;
        h.nlmsg_seq = SEQ + 1;
        memcpy(mutated, &h, sizeof(h));
        CHECK(parse(mutated, len, 80, &out, &err) == -1);
        h.nlmsg_seq = SEQ;
        h.nlmsg_flags |= NLM_F_DUMP_INTR;
        memcpy(mutated, &h, sizeof(h));
        CHECK(parse(mutated, len, 80, &out, &err) == -1 && err.code == EAGAIN);
    }
    /* attribute longer than its message */
    len = put_diag(buf, 0, AF_INET6, "::", 80, 10, 0, 1, 0);
    {
        size_t at = NLMSG_ALIGN(NLMSG_LENGTH(sizeof(struct inet_diag_msg)));
        struct nlattr a;
        memcpy(&a, buf + at, sizeof(a));
        a.nla_len = 200;
        memcpy(buf + at, &a, sizeof(a));
        CHECK(parse(buf, len, 80, &out, &err) == -1 && err.code == EBADMSG);
        a.nla_len = 2; /* shorter than its own header */
        memcpy(buf + at, &a, sizeof(a));
        CHECK(parse(buf, len, 80, &out, &err) == -1);
        xb_listeners_free(&out);
    }
    /* NULL / empty */
    CHECK(xb_owner_parse_diag(NULL, 0, SEQ, 80, &out, &err) == 0);
    CHECK(xb_owner_parse_diag(NULL, 5, SEQ, 80, &out, &err) == -1);
    CHECK(xb_owner_parse_diag(buf, len, SEQ, 80, NULL, &err) == -1);

    /* 5. mutations of a valid multi-message reply, and pure noise */
    len = put_diag(buf, 0, AF_INET, "127.0.0.1", 80, 10, 1, 2, -1);
    len = put_diag(buf, len, AF_INET6, "::1", 80, 10, 3, 4, 1);
    len = put_diag(buf, len, AF_INET6, "::", 80, 10, 3, 5, 0);
    len = put_done(buf, len);
    for (round = 0; round < 300000; round++) {
        size_t mlen = len;
        int flips = 1 + (int)(next_random() % 4);
        memcpy(mutated, buf, len);
        if (round % 3 == 0) {
            mlen = next_random() % (len + 1);
        } else if (round % 7 == 0) {
            mlen = next_random() % 512;
            for (i = 0; i < mlen; i++)
                mutated[i] = (unsigned char)next_random();
        }
        while (flips-- > 0 && mlen > 0)
            mutated[next_random() % mlen] = (unsigned char)next_random();
        rc = parse(mutated, mlen, (round & 1) ? 80 : -1, &out, &err);
        CHECK(rc >= -1 && rc <= 1);
        for (i = 0; i < out.count; i++) {
            CHECK(out.items[i].family == AF_INET || out.items[i].family == AF_INET6);
            CHECK(memchr(out.items[i].host, '\0', sizeof(out.items[i].host)) != NULL);
            CHECK(out.items[i].npids == 0);
            if (round & 1)
                CHECK(out.items[i].port == 80);
        }
        if (rc < 0)
            rejected++;
        else
            accepted++;
        xb_listeners_free(&out);
    }
    printf("owner_parse_test: %lld mutated replies accepted, %lld rejected, %d failures\n",
           accepted, rejected, failures);
    return failures ? 1 : 0;
}
