/*
 * unit_selector.c - the dispatch rules of selector.c over real pipes and
 * socketpairs: interests, unregistering mid-turn, on_close once, timers,
 * the turn hook. Passes with either backend (make SELECTOR=epoll|select).
 */
#include "selector.h"
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define WAIT_LIMIT_MS 30000     /* a hang guard, not a speed check */

/* What the handlers saw for one registration. */
struct probe {
    int reads, writes, closes;
    int close_fd;               /* closed by on_close when >= 0 */
    struct probe *victim;       /* on_read unregisters this one, if set */
    int victim_fd;
    int reuse_src;              /* on_read dups this onto victim_fd */
    struct probe *reused;       /* ... and registers it with this probe */
};

static void probe_init(struct probe *p)
{
    memset(p, 0, sizeof(*p));
    p->close_fd = -1;
    p->victim_fd = -1;
    p->reuse_src = -1;
}

static void probe_drain(int fd)
{
    char junk[256];
    while (read(fd, junk, sizeof(junk)) > 0)
        ;
}

static const struct fd_handler probe_handler;

/* Unregisters the victim (unless already gone) and, when asked, puts a
 * fresh readable registration on its fd number within the same turn. */
static void probe_strike(struct selector *s, struct probe *p)
{
    if (p->victim == NULL || p->victim->closes > 0)
        return;
    CHECK_EQ_INT(selector_unregister(s, p->victim_fd), 0);
    if (p->reuse_src >= 0) {
        CHECK_EQ_INT(dup3(p->reuse_src, p->victim_fd, O_CLOEXEC), p->victim_fd);
        CHECK_EQ_INT(selector_register(s, p->victim_fd, &probe_handler,
                                       OP_READ, p->reused), 0);
    }
}

static void probe_read(struct selector_key *key)
{
    struct probe *p = key->data;
    p->reads++;
    probe_drain(key->fd);
    probe_strike(key->s, p);
}

static void probe_write(struct selector_key *key)
{
    struct probe *p = key->data;
    p->writes++;
}

static void probe_close(struct selector_key *key)
{
    struct probe *p = key->data;
    p->closes++;
    if (p->close_fd >= 0)
        close(p->close_fd);
}

static const struct fd_handler probe_handler = {
    .on_read = probe_read,
    .on_write = probe_write,
    .on_close = probe_close,
};

static void make_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) == -1) {
        perror("pipe2");
        exit(2);
    }
}

static void make_pair(int fds[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                   fds) == -1) {
        perror("socketpair");
        exit(2);
    }
}

static void put_byte(int fd)
{
    CHECK_EQ_INT(write(fd, "x", 1), 1);
}

/* Runs turns until *counter reaches want or the wait limit passes. */
static void run_until(struct selector *s, const int *counter, int want)
{
    uint64_t end = selector_now_ms() + WAIT_LIMIT_MS;
    while (*counter < want && selector_now_ms() < end)
        CHECK_EQ_INT(selector_select(s, 50), 0);
}

static struct selector *new_selector(void)
{
    struct selector *s = selector_new(4096);
    CHECK(s != NULL);
    if (s == NULL)
        exit(2);
    return s;
}

/* One selector and one socketpair; sv[0] is the end under test. */
struct fixture {
    struct selector *s;
    struct probe p;
    int sv[2];
};

static void fixture_open(struct fixture *f)
{
    f->s = new_selector();
    probe_init(&f->p);
    make_pair(f->sv);
}

static int fixture_register(struct fixture *f, int fd, unsigned interest)
{
    return selector_register(f->s, fd, &probe_handler, interest, &f->p);
}

static void fixture_hang_up(struct fixture *f)
{
    close(f->sv[1]);
    f->sv[1] = -1;
}

static void fixture_close(struct fixture *f)
{
    selector_destroy(f->s);
    for (int i = 0; i < 2; i++)
        if (f->sv[i] >= 0)
            close(f->sv[i]);
}

/* ---- fds ---------------------------------------------------------------- */

static void test_read_dispatch(void)
{
    struct fixture f;
    fixture_open(&f);
    CHECK_EQ_INT(fixture_register(&f, f.sv[0], OP_READ), 0);
    CHECK_EQ_INT(selector_select(f.s, 0), 0);
    CHECK_EQ_INT(f.p.reads, 0);
    put_byte(f.sv[1]);
    run_until(f.s, &f.p.reads, 1);
    CHECK_EQ_INT(f.p.reads, 1);
    CHECK_EQ_INT(f.p.writes, 0);
    fixture_close(&f);
    CHECK_EQ_INT(f.p.closes, 1);
}

/* on_write runs while OP_WRITE is set, and only then. */
static void test_write_interest(void)
{
    struct fixture f;
    fixture_open(&f);
    CHECK_EQ_INT(fixture_register(&f, f.sv[0], OP_WRITE), 0);
    run_until(f.s, &f.p.writes, 1);
    CHECK_EQ_INT(f.p.writes, 1);
    CHECK_EQ_INT(selector_set_interest(f.s, f.sv[0], OP_READ), 0);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(selector_select(f.s, 10), 0);
    CHECK_EQ_INT(f.p.writes, 1);
    CHECK_EQ_INT(selector_set_interest(f.s, f.sv[0], OP_READ | OP_WRITE), 0);
    put_byte(f.sv[1]);
    run_until(f.s, &f.p.reads, 1);
    CHECK_EQ_INT(f.p.reads, 1);
    CHECK(f.p.writes >= 2);
    CHECK_EQ_INT(selector_unregister(f.s, f.sv[0]), 0);
    CHECK_EQ_INT(selector_set_interest(f.s, f.sv[0], OP_READ), -1);
    fixture_close(&f);
}

static void drop_write_read(struct selector_key *key)
{
    struct probe *p = key->data;
    p->reads++;
    probe_drain(key->fd);
    CHECK_EQ_INT(selector_set_interest(key->s, key->fd, OP_READ), 0);
}

/* Write interest dropped by on_read: no on_write in that same turn. */
static void test_interest_dropped_mid_turn(void)
{
    static const struct fd_handler h = {
        .on_read = drop_write_read, .on_write = probe_write,
    };
    struct fixture f;
    fixture_open(&f);
    put_byte(f.sv[1]);
    CHECK_EQ_INT(selector_register(f.s, f.sv[0], &h, OP_READ | OP_WRITE,
                                   &f.p), 0);
    CHECK_EQ_INT(selector_select(f.s, WAIT_LIMIT_MS), 0);
    CHECK_EQ_INT(f.p.reads, 1);
    CHECK_EQ_INT(f.p.writes, 0);
    fixture_close(&f);
}

/* OP_NOOP: known fd, no callbacks, and no busy turns even after a hang-up
 * (epoll reports HUP for an empty mask; the backend must not spin). */
static void test_noop_interest(void)
{
    struct fixture f;
    fixture_open(&f);
    CHECK_EQ_INT(fixture_register(&f, f.sv[0], OP_NOOP), 0);
    put_byte(f.sv[1]);
    fixture_hang_up(&f);
    uint64_t start = selector_now_ms();
    CHECK_EQ_INT(selector_select(f.s, 100), 0);
    CHECK(selector_now_ms() - start >= 50);
    CHECK_EQ_INT(f.p.reads + f.p.writes, 0);
    CHECK_EQ_INT(selector_set_interest(f.s, f.sv[0], OP_READ), 0);
    run_until(f.s, &f.p.reads, 1);
    CHECK_EQ_INT(f.p.reads, 1);
    fixture_close(&f);
}

/* A peer hang-up reaches the reader, whose read then sees 0. */
static void test_hangup_is_readable(void)
{
    struct fixture f;
    char c;
    fixture_open(&f);
    CHECK_EQ_INT(fixture_register(&f, f.sv[0], OP_READ), 0);
    fixture_hang_up(&f);
    run_until(f.s, &f.p.reads, 1);
    CHECK_EQ_INT(f.p.reads, 1);
    CHECK_EQ_INT(read(f.sv[0], &c, 1), 0);
    fixture_close(&f);
}

/* ---- unregistering mid-turn (run under ASan: contexts are freed) -------- */

static void self_read(struct selector_key *key)
{
    int *reads = key->data;
    (*reads)++;
    CHECK_EQ_INT(selector_unregister(key->s, key->fd), 0);
}

static void self_write(struct selector_key *key)
{
    (void)key;
    CHECK(!"on_write after unregister");
}

static void self_close(struct selector_key *key)
{
    free(key->data);    /* any later callback would be a use after free */
}

static void test_unregister_self(void)
{
    static const struct fd_handler h = { self_read, self_write, self_close };
    struct selector *s = new_selector();
    int sv[2];
    int *reads = calloc(1, sizeof(*reads));
    make_pair(sv);
    put_byte(sv[1]);    /* readable and writable in the same turn */
    CHECK_EQ_INT(selector_register(s, sv[0], &h, OP_READ | OP_WRITE, reads), 0);
    CHECK_EQ_INT(selector_select(s, WAIT_LIMIT_MS), 0);
    CHECK_EQ_INT(selector_unregister(s, sv[0]), -1);
    CHECK_EQ_INT(errno, EINVAL);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(selector_select(s, 10), 0);
    selector_destroy(s);
    close(sv[0]);
    close(sv[1]);
}

/* Two ready pipes; whichever runs first removes the other, which must not
 * run this turn. With reuse, the fd number comes back at once with a new
 * readable registration that must wait for the next turn. */
static void run_cross_unregister(bool reuse)
{
    struct selector *s = new_selector();
    struct probe a, b, fresh;
    int pa[2], pb[2], pc[2];
    make_pipe(pa);
    make_pipe(pb);
    make_pipe(pc);
    probe_init(&a);
    probe_init(&b);
    probe_init(&fresh);
    a.victim = &b, a.victim_fd = pb[0], b.victim = &a, b.victim_fd = pa[0];
    a.close_fd = pa[0], b.close_fd = pb[0];
    if (reuse) {
        a.reuse_src = b.reuse_src = pc[0];
        a.reused = b.reused = &fresh;
        put_byte(pc[1]);
    }
    put_byte(pa[1]);
    put_byte(pb[1]);
    CHECK_EQ_INT(selector_register(s, pa[0], &probe_handler, OP_READ, &a), 0);
    CHECK_EQ_INT(selector_register(s, pb[0], &probe_handler, OP_READ, &b), 0);
    CHECK_EQ_INT(selector_select(s, WAIT_LIMIT_MS), 0);
    CHECK_EQ_INT(a.reads + b.reads, 1);
    CHECK_EQ_INT(a.closes + b.closes, 1);
    CHECK_EQ_INT(a.closes, b.reads);    /* the one that ran survived */
    CHECK_EQ_INT(fresh.reads, 0);
    if (reuse) {
        run_until(s, &fresh.reads, 1);
        CHECK_EQ_INT(fresh.reads, 1);
    }
    selector_destroy(s);
    CHECK_EQ_INT(a.closes, 1);
    CHECK_EQ_INT(b.closes, 1);
    CHECK_EQ_INT(fresh.closes, reuse ? 1 : 0);
    int others[] = { pa[1], pb[1], pc[0], pc[1] };
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        close(others[i]);
    if (reuse)  /* the dup3 copy sits on whichever number was victimised */
        close(a.reads ? pb[0] : pa[0]);
}

static void test_unregister_other(void)
{
    run_cross_unregister(false);
}

static void test_unregister_reuse_number(void)
{
    run_cross_unregister(true);
}

/* on_close runs exactly once per registration, destroy included. */
static void test_destroy_closes_all(void)
{
    struct selector *s = new_selector();
    struct probe p[3];
    int fds[3][2];
    for (int i = 0; i < 3; i++) {
        probe_init(&p[i]);
        make_pipe(fds[i]);
        p[i].close_fd = fds[i][0];
        CHECK_EQ_INT(selector_register(s, fds[i][0], &probe_handler,
                                       i == 0 ? OP_NOOP : OP_READ, &p[i]), 0);
    }
    CHECK_EQ_INT(selector_unregister(s, fds[1][0]), 0);
    CHECK_EQ_INT(selector_unregister(s, fds[1][0]), -1);
    selector_destroy(s);    /* on_close once each, none again for fds[1] */
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(p[i].closes, 1);
        close(fds[i][1]);
    }
}

static void test_register_errors(void)
{
    struct fixture f;
    fixture_open(&f);
    int limit = selector_fd_limit(f.s);
    CHECK(limit > 0 && limit <= 4096);
    if (strcmp(selector_backend_name(), "select") == 0)
        CHECK(limit <= FD_SETSIZE);
    CHECK_EQ_INT(fixture_register(&f, -1, OP_READ), -1);
    CHECK_EQ_INT(errno, EINVAL);
    CHECK_EQ_INT(fixture_register(&f, limit, OP_READ), -1);
    CHECK_EQ_INT(errno, EINVAL);
    CHECK_EQ_INT(fixture_register(&f, f.sv[0], OP_READ), 0);
    CHECK_EQ_INT(fixture_register(&f, f.sv[0], OP_READ), -1);
    CHECK_EQ_INT(errno, EINVAL);
    CHECK_EQ_INT(fixture_register(&f, f.sv[1], 8), -1);
    int closed = f.sv[1];
    fixture_hang_up(&f);
    CHECK_EQ_INT(fixture_register(&f, closed, OP_NOOP), -1);
    CHECK_EQ_INT(selector_set_interest(f.s, closed, OP_READ), -1);   /* not there */
    CHECK_EQ_INT(selector_set_interest(f.s, limit, OP_READ), -1);
    fixture_close(&f);
    CHECK_EQ_INT(f.p.closes, 1);
}

/* A real fd above FD_SETSIZE: select() must refuse it, epoll take it. */
static void test_high_fd(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur <= FD_SETSIZE + 8)
        return;     /* cannot open such an fd here: nothing to check */
    struct fixture f;
    int high = FD_SETSIZE + 5;
    fixture_open(&f);
    CHECK_EQ_INT(dup3(f.sv[0], high, O_CLOEXEC), high);
    int rc = fixture_register(&f, high, OP_READ);
    if (strcmp(selector_backend_name(), "select") == 0) {
        CHECK_EQ_INT(rc, -1);
        CHECK_EQ_INT(errno, EINVAL);
    } else {
        CHECK_EQ_INT(rc, 0);
        put_byte(f.sv[1]);
        run_until(f.s, &f.p.reads, 1);
        CHECK_EQ_INT(f.p.reads, 1);
    }
    fixture_close(&f);
    close(high);
}

/* ---- timers, hook, signals ---------------------------------------------- */

struct timer_log {
    int count;
    int rearms;                 /* re-arm the timer this many more times */
    struct selector_timer *self;
};

static void timer_note(struct selector *s, void *data)
{
    struct timer_log *log = data;
    (void)s;
    log->count++;
}

static void test_timer_cancel(void)
{
    struct selector *s = new_selector();
    struct timer_log kept = { .count = 0 }, dropped = { .count = 0 };
    struct selector_timer a = { .on_expire = timer_note, .data = &dropped };
    struct selector_timer b = { .on_expire = timer_note, .data = &kept };
    struct selector_timer idle = { .on_expire = timer_note, .data = &dropped };
    selector_timer_set(s, &a, 20);
    selector_timer_set(s, &b, 60);
    selector_timer_cancel(s, &a);
    selector_timer_cancel(s, &a);       /* harmless twice */
    selector_timer_cancel(s, &idle);    /* and when never armed */
    CHECK_EQ_INT(a.slot, 0);
    run_until(s, &kept.count, 1);
    CHECK_EQ_INT(kept.count, 1);
    CHECK_EQ_INT(dropped.count, 0);
    selector_timer_set(s, &a, 1000000); /* armed at destroy: left disarmed */
    selector_destroy(s);
    CHECK_EQ_INT(a.slot, 0);
}

/* Many timers, some cancelled, some moved: they fire in deadline order. */
struct heap_check {
    uint64_t last;
    int fired;
    int out_of_order;
};

static struct heap_check heap_check;

static void timer_heap_fire(struct selector *s, void *data)
{
    struct selector_timer *t = data;
    (void)s;
    if (t->deadline_ms < heap_check.last)
        heap_check.out_of_order++;
    heap_check.last = t->deadline_ms;
    heap_check.fired++;
}

static void test_timer_order(void)
{
    enum { N = 200 };
    struct selector *s = new_selector();
    static struct selector_timer t[N];
    unsigned seed = 12345;
    int live = N;
    memset(t, 0, sizeof(t));
    memset(&heap_check, 0, sizeof(heap_check));
    for (int i = 0; i < N; i++) {
        t[i].on_expire = timer_heap_fire;
        t[i].data = &t[i];
        seed = seed * 1103515245u + 12345u;
        selector_timer_set(s, &t[i], (seed >> 8) % 150);
    }
    for (int i = 0; i < N; i += 3) {
        selector_timer_cancel(s, &t[i]);
        live--;
    }
    for (int i = 1; i < N; i += 3)  /* re-armed while armed */
        selector_timer_set(s, &t[i], (uint64_t)(i % 40));
    run_until(s, &heap_check.fired, live);
    CHECK_EQ_INT(heap_check.fired, live);
    CHECK_EQ_INT(heap_check.out_of_order, 0);
    for (int i = 0; i < N; i++)
        CHECK_EQ_INT(t[i].slot, 0);
    selector_destroy(s);
}

static void timer_rearm(struct selector *s, void *data)
{
    struct timer_log *log = data;
    log->count++;
    CHECK_EQ_INT(log->self->slot, 0);   /* disarmed before the callback */
    if (log->rearms-- > 0)
        selector_timer_set(s, log->self, log->rearms % 2 ? 0 : 10);
}

static void test_timer_rearm_self(void)
{
    struct selector *s = new_selector();
    struct timer_log log = { .count = 0, .rearms = 3 };
    struct selector_timer t = { .on_expire = timer_rearm, .data = &log };
    log.self = &t;
    selector_timer_set(s, &t, 10);
    selector_timer_set(s, &t, 5);       /* re-arm while armed: one entry */
    run_until(s, &log.count, 4);
    CHECK_EQ_INT(log.count, 4);
    CHECK_EQ_INT(t.slot, 0);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(selector_select(s, 10), 0);
    CHECK_EQ_INT(log.count, 4);
    selector_destroy(s);
}

static void timer_spin(struct selector *s, void *data)
{
    struct timer_log *log = data;
    log->count++;
    selector_timer_set(s, log->self, 0);
}

/* A timer re-arming itself with 0 fires once per turn, never in a loop. */
static void test_timer_rearm_zero(void)
{
    struct selector *s = new_selector();
    struct timer_log log = { .count = 0 };
    struct selector_timer t = { .on_expire = timer_spin, .data = &log };
    log.self = &t;
    selector_timer_set(s, &t, 0);
    CHECK_EQ_INT(selector_select(s, 0), 0);
    CHECK_EQ_INT(log.count, 1);
    CHECK(t.slot != 0);
    run_until(s, &log.count, 3);
    CHECK_EQ_INT(log.count, 3);
    selector_destroy(s);
    CHECK_EQ_INT(t.slot, 0);
}

/* With no fd ready and no caller timeout, a 50 ms timer ends the wait. */
static void test_timer_bounds_wait(void)
{
    struct selector *s = new_selector();
    struct timer_log log = { .count = 0 };
    struct selector_timer t = { .on_expire = timer_note, .data = &log };
    struct probe p;
    int fds[2];
    probe_init(&p);
    make_pipe(fds);
    CHECK_EQ_INT(selector_register(s, fds[0], &probe_handler, OP_READ, &p), 0);
    static const int timeouts[] = { -1, 10000 };   /* none, and too long */
    for (int i = 0; i < 2; i++) {
        int timeout = timeouts[i];
        uint64_t start = selector_now_ms();
        selector_timer_set(s, &t, 50);
        while (t.slot != 0 && selector_now_ms() - start < WAIT_LIMIT_MS)
            CHECK_EQ_INT(selector_select(s, timeout), 0);
        CHECK(selector_now_ms() - start < WAIT_LIMIT_MS);
        CHECK(selector_now_ms() - start >= 40);
    }
    CHECK_EQ_INT(log.count, 2);
    CHECK_EQ_INT(p.reads, 0);
    selector_destroy(s);
    close(fds[0]);
    close(fds[1]);
}

static void hook_count(void *data)
{
    (*(int *)data)++;
}

static void test_turn_hook(void)
{
    struct selector *s = new_selector();
    int turns = 0;
    selector_set_turn_hook(s, hook_count, &turns);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(selector_select(s, 0), 0);
    CHECK_EQ_INT(turns, 3);
    selector_set_turn_hook(s, NULL, NULL);
    CHECK_EQ_INT(selector_select(s, 0), 0);
    CHECK_EQ_INT(turns, 3);
    selector_destroy(s);
}

static void on_alarm(int sig)
{
    (void)sig;
}

/* A signal during the wait returns 0 early, so the caller can act on it. */
static void test_signal_interrupts(void)
{
    struct selector *s = new_selector();
    struct sigaction sa = { .sa_handler = on_alarm }, old;
    struct itimerval it = { .it_value = { .tv_sec = 0, .tv_usec = 50000 } };
    sigemptyset(&sa.sa_mask);   /* no SA_RESTART: the wait must see EINTR */
    CHECK_EQ_INT(sigaction(SIGALRM, &sa, &old), 0);
    CHECK_EQ_INT(setitimer(ITIMER_REAL, &it, NULL), 0);
    uint64_t start = selector_now_ms();
    CHECK_EQ_INT(selector_select(s, 10000), 0);
    CHECK(selector_now_ms() - start < WAIT_LIMIT_MS);
    sigaction(SIGALRM, &old, NULL);
    selector_destroy(s);
}

static void nested_read(struct selector_key *key)
{
    int *result = key->data;
    *result = selector_select(key->s, 0);
    probe_drain(key->fd);
}

static void test_no_nested_turn(void)
{
    static const struct fd_handler h = { .on_read = nested_read };
    struct selector *s = new_selector();
    int result = 0, fds[2];
    make_pipe(fds);
    put_byte(fds[1]);
    CHECK_EQ_INT(selector_register(s, fds[0], &h, OP_READ, &result), 0);
    CHECK_EQ_INT(selector_select(s, WAIT_LIMIT_MS), 0);
    CHECK_EQ_INT(result, -1);
    selector_destroy(s);
    close(fds[0]);
    close(fds[1]);
}

UNIT_MAIN("selector",
          { "read_dispatch", test_read_dispatch },
          { "write_interest", test_write_interest },
          { "interest_dropped_mid_turn", test_interest_dropped_mid_turn },
          { "noop_interest", test_noop_interest },
          { "hangup_is_readable", test_hangup_is_readable },
          { "unregister_self", test_unregister_self },
          { "unregister_other", test_unregister_other },
          { "unregister_reuse_number", test_unregister_reuse_number },
          { "destroy_closes_all", test_destroy_closes_all },
          { "register_errors", test_register_errors },
          { "high_fd", test_high_fd },
          { "timer_order", test_timer_order },
          { "timer_cancel", test_timer_cancel },
          { "timer_rearm_self", test_timer_rearm_self },
          { "timer_rearm_zero", test_timer_rearm_zero },
          { "timer_bounds_wait", test_timer_bounds_wait },
          { "turn_hook", test_turn_hook },
          { "signal_interrupts", test_signal_interrupts },
          { "no_nested_turn", test_no_nested_turn })
