/*
 * unit_buffer.c - buffer.c: positions, compaction, all-or-nothing append,
 * and the four results of buffer_fill/buffer_flush on a real socketpair.
 */
#include "buffer.h"
#include "unit.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static void make_pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                   sv) == -1) {
        perror("socketpair");
        exit(2);
    }
}

static void test_positions(void)
{
    uint8_t mem[8];
    struct buffer b;
    size_t n;
    buffer_init(&b, mem, sizeof(mem));
    CHECK_EQ_INT(buffer_readable(&b), 0);
    CHECK_EQ_INT(buffer_space(&b), 8);
    uint8_t *w = buffer_write_ptr(&b, &n);
    CHECK(w == mem);
    CHECK_EQ_INT(n, 8);
    memcpy(w, "abc", 3);
    buffer_write_adv(&b, 3);
    uint8_t *r = buffer_read_ptr(&b, &n);
    CHECK_EQ_INT(n, 3);
    CHECK_MEM(r, "abc", 3);
    buffer_read_adv(&b, 1);
    CHECK_EQ_INT(buffer_readable(&b), 2);
    CHECK_EQ_INT(buffer_space(&b), 6);
    buffer_read_adv(&b, 2);     /* drained: positions rewind */
    CHECK_EQ_INT(b.rpos, 0);
    CHECK_EQ_INT(b.wpos, 0);
    buffer_write_adv(&b, 100);  /* clamped, never past cap */
    CHECK_EQ_INT(b.wpos, 8);
    buffer_reset(&b);
    CHECK_EQ_INT(buffer_readable(&b), 0);
}

static void test_compaction(void)
{
    uint8_t mem[8];
    struct buffer b;
    size_t n;
    buffer_init(&b, mem, sizeof(mem));
    CHECK_EQ_INT(buffer_append(&b, "12345678", 8), 0);
    buffer_read_adv(&b, 5);
    CHECK_EQ_INT(buffer_space(&b), 5);
    uint8_t *w = buffer_write_ptr(&b, &n);  /* no room at the tail */
    CHECK(w == mem + 3);
    CHECK_EQ_INT(n, 5);
    CHECK_EQ_INT(b.rpos, 0);
    CHECK_MEM(mem, "678", 3);
    buffer_read_adv(&b, 1);
    buffer_compact(&b);
    CHECK_EQ_INT(b.rpos, 0);
    CHECK_EQ_INT(b.wpos, 2);
    CHECK_MEM(mem, "78", 2);
}

static void test_append_all_or_nothing(void)
{
    uint8_t mem[8];
    struct buffer b;
    buffer_init(&b, mem, sizeof(mem));
    CHECK_EQ_INT(buffer_append(&b, "abcdef", 6), 0);
    CHECK_EQ_INT(buffer_append(&b, "xyz", 3), -1);
    CHECK_EQ_INT(buffer_readable(&b), 6);
    CHECK_EQ_INT(buffer_append(&b, NULL, 0), 0);
    buffer_read_adv(&b, 4);
    CHECK_EQ_INT(buffer_append(&b, "uvwxyz", 6), 0);  /* needs compaction */
    CHECK_EQ_INT(buffer_readable(&b), 8);
    size_t n;
    uint8_t *r = buffer_read_ptr(&b, &n);
    CHECK_EQ_INT(n, 8);
    CHECK_MEM(r, "efuvwxyz", 8);
    CHECK_EQ_INT(buffer_space(&b), 0);
    CHECK_EQ_INT(buffer_append(&b, "!", 1), -1);
}

static void test_fill(void)
{
    uint8_t mem[4];
    struct buffer b;
    size_t n = 99;
    int sv[2];
    make_pair(sv);
    buffer_init(&b, mem, sizeof(mem));
    CHECK_EQ_INT(buffer_fill(&b, sv[0], &n), IO_AGAIN);    /* nothing sent */
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(write(sv[1], "hello", 5), 5);
    CHECK_EQ_INT(buffer_fill(&b, sv[0], &n), IO_OK);
    CHECK_EQ_INT(n, 4);
    n = 99;
    CHECK_EQ_INT(buffer_fill(&b, sv[0], &n), IO_AGAIN);    /* full */
    CHECK_EQ_INT(n, 0);
    buffer_read_adv(&b, 4);
    CHECK_EQ_INT(buffer_fill(&b, sv[0], &n), IO_OK);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(mem[0], 'o');
    close(sv[1]);
    CHECK_EQ_INT(buffer_fill(&b, sv[0], &n), IO_CLOSED);
    CHECK_EQ_INT(n, 0);
    close(sv[0]);
    CHECK_EQ_INT(buffer_fill(&b, sv[0], &n), IO_ERROR);    /* bad fd */
    CHECK_EQ_INT(errno, EBADF);
}

static void test_flush(void)
{
    uint8_t mem[16], got[16];
    struct buffer b;
    size_t n = 99;
    int sv[2];
    make_pair(sv);
    buffer_init(&b, mem, sizeof(mem));
    CHECK_EQ_INT(buffer_flush(&b, sv[0], &n), IO_OK);      /* nothing owed */
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(buffer_append(&b, "250 ok\r\n", 8), 0);
    CHECK_EQ_INT(buffer_flush(&b, sv[0], &n), IO_OK);
    CHECK_EQ_INT(n, 8);
    CHECK_EQ_INT(buffer_readable(&b), 0);
    CHECK_EQ_INT(read(sv[1], got, sizeof(got)), 8);
    CHECK_MEM(got, "250 ok\r\n", 8);
    close(sv[1]);
    CHECK_EQ_INT(buffer_append(&b, "x", 1), 0);
    CHECK_EQ_INT(buffer_flush(&b, sv[0], &n), IO_ERROR);   /* EPIPE */
    CHECK_EQ_INT(errno, EPIPE);
    CHECK_EQ_INT(buffer_readable(&b), 1);
    close(sv[0]);
}

/* A peer that reads nothing: the socket fills and the write must wait. */
static void test_flush_again(void)
{
    static uint8_t mem[4096];
    struct buffer b;
    size_t n, total = 0;
    int sv[2];
    make_pair(sv);
    buffer_init(&b, mem, sizeof(mem));
    enum io_result r = IO_OK;
    for (int i = 0; i < 100000 && r == IO_OK; i++) {
        memset(mem, 'a', sizeof(mem));
        b.rpos = 0;
        b.wpos = sizeof(mem);
        r = buffer_flush(&b, sv[0], &n);
        total += n;
    }
    CHECK_EQ_INT(r, IO_AGAIN);
    CHECK_EQ_INT(n, 0);
    CHECK(total > 0);
    close(sv[0]);
    close(sv[1]);
}

static void test_setup(void)
{
    /* A write to a closed peer must report EPIPE, not kill the test. */
    signal(SIGPIPE, SIG_IGN);
}

UNIT_MAIN("buffer",
          { "setup", test_setup },
          { "positions", test_positions },
          { "compaction", test_compaction },
          { "append_all_or_nothing", test_append_all_or_nothing },
          { "fill", test_fill },
          { "flush", test_flush },
          { "flush_again", test_flush_again })
