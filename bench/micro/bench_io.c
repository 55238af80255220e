/*
 * What the server's I/O thread pays per datagram and per pass, below the
 * transport: the figures behind the choice of how snapshots are sent.
 * Five parts, each measured side by side in every run (variants
 * interleaved, so the machine's noise hits them alike):
 *
 *  floor  What entering the kernel costs here: a null system call
 *         (getppid) and a clock read, so the figures below can be read
 *         against this machine's syscall price rather than bare metal's.
 *  send   One UDP socket on 127.0.0.1 sends B-byte datagrams (default 300)
 *         round-robin to N distinct receiver sockets (default 1,000), to a
 *         new destination each datagram, as ENet sends one datagram per
 *         peer: one sendmsg per datagram, then sendmmsg in batches of 16,
 *         64 and 256. Two receiver sets: "drained", where a thread pinned
 *         to the other core reads every socket (epoll + recvmmsg) so each
 *         datagram is queued and its reader woken, as a client's would be;
 *         and "dropped", where nobody reads and each receive buffer is
 *         kept full (minimum size, filled before timing), so delivery ends
 *         in the kernel's drop at the receive queue. On loopback the
 *         receive half of the stack (the delivery softirq) runs on the
 *         sending thread, so both figures include some of what a real NIC
 *         and the clients' own machines would pay instead. Two figures
 *         each: wall time (median over chunks of 256 datagrams), which
 *         also holds what the kernel did on this core outside the
 *         thread's own account (softirq work deferred to ksoftirqd,
 *         interrupts, the wake-ups of the reader), and the thread's CPU
 *         time, which does not, and which moves less when the machine is
 *         busy with other work.
 *  recv   One socket with a large receive buffer is filled with F queued
 *         datagrams (untimed), then drained: one recvmsg per datagram
 *         against recvmmsg in batches of 64. Also the cost of the empty
 *         read that ends every drain (EAGAIN).
 *  enet   Plain ENet (no checksum, no Kizuna gate), two sides in this
 *         process on loopback: a server host with P idle connected peers
 *         (default 1,000) whose client hosts are serviced by a thread on
 *         the other core. Timed on this thread: enet_host_service(host,
 *         &ev, 0) with nothing to do and enet_host_flush with nothing
 *         queued, against an empty host with P peer slots and one with
 *         4,000 slots, so the per-peer part of each walk can be separated
 *         from the fixed part. Warm: calls back to back, the peers stay in
 *         the caches. Cold: an 8 MiB scratch area is written before each
 *         call (only the call is timed), as a pass finds the caches after
 *         a tick's replication. Idle peers still ping every 500 ms; the
 *         datagrams the server sent and received meanwhile are printed.
 *  timer  The I/O thread's pause between passes, 250 us: a
 *         pthread_cond_timedwait on CLOCK_MONOTONIC to an absolute
 *         deadline (as the server sleeps) against nanosleep, each with the
 *         default 50 us timer slack and with 1 us: the thread's CPU time
 *         per wait and the wall time actually slept (median, p99).
 *
 * The measuring thread is pinned to core 0, helpers to core 1.
 *
 *   kz-bench-io [--dests N] [--bytes B] [--peers P]
 *               [--part floor|send|recv|enet|timer]   (default: all)
 *   KZ_BENCH_RUNS=R sets the runs (default 7)
 */
#define _GNU_SOURCE /* sendmmsg, recvmmsg, pthread_setaffinity_np */
#include <arpa/inet.h>
#include <enet/enet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <kizuna/transport.h>

#include "kzb_util.h"

#define MAX_DESTS 4000u
#define MAX_BYTES 1200u
#define MAX_BATCH 256u
#define MAX_RUNS 64u
/* Every wall-clock figure is the median over chunks of work, so that a
 * chunk in which this thread lost the core to another process (the
 * machine is shared) does not move it; CPU-time figures are totals. */
#define SEND_CHUNK 256u           /* datagrams per timed chunk */
#define SEND_CHUNKS 160u          /* chunks per variant per run */
#define SEND_DATAGRAMS (SEND_CHUNK * SEND_CHUNKS)
#define DROP_PREFILL 16u          /* per socket, more than a minimum buffer holds */
#define CATCH_UP_NS (300 * 1000000ull)
#define RECV_BATCH 64u
#define RECV_FILL 1024u           /* datagrams queued before a timed drain */
#define RECV_FILLS 16u            /* drains per variant per run */
#define RECV_BUFFER_BYTES (8 * 1024 * 1024)
#define EMPTY_CHUNK 1000u
#define EMPTY_CHUNKS 64u
#define MAX_PEERS 3000u          /* below WIDE_HOST_SLOTS, so free slots can be told apart */
#define CLIENT_HOST_PEERS 1024u   /* ENet allows 4,095 per host */
#define MAX_CLIENT_HOSTS 4u
#define CONNECT_WAVE 128u
#define CONNECT_DEADLINE_NS (60 * 1000000000ull)
#define WIDE_HOST_SLOTS 4000u
#define ENET_WINDOW_NS (1000 * 1000000ull)
#define ENET_CALLS_PER_SLICE 16u
#define ENET_COLD_CALLS 100u
#define ENET_MAX_SLICES 8192u
#define COLD_SCRATCH_BYTES (8u * 1024 * 1024)
#define KEEPER_NAP_NS 50000L
#define PASS_WAIT_NS 250000L
#define TIMER_WAITS 1000u
#define SLACK_TIGHT_NS 1000ul
#define FLOOR_CHUNK 2000u
#define FLOOR_CHUNKS 64u
#define MEASURE_CPU 0
#define HELPER_CPU 1

/* ---- small helpers --------------------------------------------------------- */

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Pins the calling thread to one core; on a machine with fewer cores the
 * request fails and the thread stays where the scheduler puts it. */
static void pin_to(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void nap_ns(long ns)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = ns};
    nanosleep(&ts, NULL);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile (0..1) of v[0..n), by nearest rank; sorts v in place. */
static double quantile(double *v, size_t n, double q)
{
    qsort(v, n, sizeof *v, cmp_double);
    size_t at = (size_t)(q * (double)(n - 1) + 0.5);
    return v[at < n ? at : n - 1];
}

/* A UDP socket bound to 127.0.0.1 on a free port; its address in *out. */
static int udp_loopback(struct sockaddr_in *out)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("udp socket");
        exit(1);
    }
    if (out)
        *out = a;
    return fd;
}

static void raise_fd_limit(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &r);
    }
}

/* ---- options ---------------------------------------------------------------- */

static struct {
    uint32_t dests, bytes, peers;
    const char *part;
} opt = {1000, 300, 1000, NULL};

static int part_on(const char *name)
{
    return opt.part == NULL || strcmp(opt.part, name) == 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: kz-bench-io [--dests 1..%u] [--bytes 16..%u] [--peers 1..%u] "
                    "[--part floor|send|recv|enet|timer]\n",
            MAX_DESTS, MAX_BYTES, MAX_PEERS);
    exit(2);
}

static int is_part(const char *name)
{
    static const char *const parts[] = {"floor", "send", "recv", "enet", "timer"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (strcmp(name, parts[i]) == 0)
            return 1;
    return 0;
}

/* Every flag takes a value; anything else, or a value out of range, is a
 * usage error. */
static void parse_args(int argc, char **argv)
{
    if (argc % 2 == 0)
        usage();
    for (int i = 1; i + 1 < argc; i += 2) {
        long v = strtol(argv[i + 1], NULL, 10);
        if (strcmp(argv[i], "--dests") == 0 && v >= 1 && v <= (long)MAX_DESTS)
            opt.dests = (uint32_t)v;
        else if (strcmp(argv[i], "--bytes") == 0 && v >= 16 && v <= (long)MAX_BYTES)
            opt.bytes = (uint32_t)v;
        else if (strcmp(argv[i], "--peers") == 0 && v >= 1 && v <= (long)MAX_PEERS)
            opt.peers = (uint32_t)v;
        else if (strcmp(argv[i], "--part") == 0 && is_part(argv[i + 1]))
            opt.part = argv[i + 1];
        else
            usage();
    }
}

/* ---- floor: what entering the kernel costs on this machine ------------------- */

/* Median over chunks of FLOOR_CHUNK calls: a null system call
 * (what = 0) or a clock read (what = 1). */
static double time_floor(int what)
{
    double chunk[FLOOR_CHUNKS];
    uint64_t acc = 0;
    for (uint32_t k = 0; k < FLOOR_CHUNKS; k++) {
        uint64_t t0 = kzb_now_ns();
        for (uint32_t i = 0; i < FLOOR_CHUNK; i++)
            acc += what == 0 ? (uint64_t)syscall(SYS_getppid) : kzb_now_ns();
        chunk[k] = (double)(kzb_now_ns() - t0) / 1e3 / FLOOR_CHUNK;
    }
    kzb_sink(acc);
    return quantile(chunk, FLOOR_CHUNKS, 0.5);
}

static void part_floor(size_t runs)
{
    double sys[MAX_RUNS], clk[MAX_RUNS];
    for (size_t i = 0; i < runs; i++) {
        sys[i] = time_floor(0);
        clk[i] = time_floor(1);
    }
    kzb_report("floor: null system call (getppid)", "us/call", sys, runs);
    kzb_report("floor: clock_gettime(CLOCK_MONOTONIC)", "us/call", clk, runs);
}

/* ---- send: one sender, N destinations ------------------------------------------ */

typedef struct {
    int fd;
    uint32_t n, next;
    struct sockaddr_in dst[MAX_DESTS];
    uint8_t payload[MAX_BYTES];
    struct iovec iov;
    struct mmsghdr msg[MAX_BATCH];
    uint64_t errors;
} sender;

typedef struct {
    int fds[MAX_DESTS];
    struct sockaddr_in addr[MAX_DESTS];
    uint32_t n;
} receivers;

static void sender_init(sender *s, uint32_t bytes)
{
    s->fd = udp_loopback(NULL);
    s->next = 0;
    for (uint32_t i = 0; i < bytes; i++)
        s->payload[i] = (uint8_t)(i * 37 + 11);
    s->iov = (struct iovec){.iov_base = s->payload, .iov_len = bytes};
    for (uint32_t i = 0; i < MAX_BATCH; i++)
        s->msg[i].msg_hdr = (struct msghdr){.msg_namelen = sizeof(struct sockaddr_in),
                                            .msg_iov = &s->iov, .msg_iovlen = 1};
}

static void sender_aim(sender *s, const receivers *r)
{
    s->n = r->n;
    s->next = 0;
    memcpy(s->dst, r->addr, r->n * sizeof r->addr[0]);
}

/* Sends `count` datagrams, each to the next destination, `batch` per
 * system call (1 = sendmsg). A refused datagram is counted and skipped. */
static void send_datagrams(sender *s, uint32_t count, uint32_t batch)
{
    uint32_t done = 0;
    while (done < count) {
        uint32_t b = count - done < batch ? count - done : batch;
        for (uint32_t i = 0; i < b; i++)
            s->msg[i].msg_hdr.msg_name = &s->dst[(s->next + i) % s->n];
        int sent = batch == 1 ? (int)(sendmsg(s->fd, &s->msg[0].msg_hdr, 0) == (ssize_t)s->iov.iov_len)
                              : sendmmsg(s->fd, s->msg, b, 0);
        if (sent <= 0) {
            s->errors++;
            sent = 1;
        }
        s->next = (s->next + (uint32_t)sent) % s->n;
        done += (uint32_t)sent;
    }
}

static void receivers_open(receivers *r, uint32_t n, int rcvbuf)
{
    r->n = n;
    for (uint32_t i = 0; i < n; i++) {
        r->fds[i] = udp_loopback(&r->addr[i]);
        if (rcvbuf >= 0)
            (void)setsockopt(r->fds[i], SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    }
}

static void receivers_close(receivers *r)
{
    for (uint32_t i = 0; i < r->n; i++)
        close(r->fds[i]);
}

/* The drained set's reader: level-triggered epoll over every socket, each
 * ready socket read with recvmmsg until it is empty. */
typedef struct {
    const receivers *r;
    int ep;
    _Atomic uint64_t received;
    _Atomic int stop;
} drainer;

static uint32_t drain_socket(int fd)
{
    static uint8_t buf[RECV_BATCH][MAX_BYTES]; /* the drainer thread only */
    static struct iovec iov[RECV_BATCH];
    static struct mmsghdr m[RECV_BATCH];
    uint32_t total = 0;
    for (;;) {
        for (uint32_t i = 0; i < RECV_BATCH; i++) {
            iov[i] = (struct iovec){.iov_base = buf[i], .iov_len = MAX_BYTES};
            m[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
        }
        int got = recvmmsg(fd, m, RECV_BATCH, MSG_DONTWAIT, NULL);
        if (got <= 0)
            return total;
        total += (uint32_t)got;
        if ((uint32_t)got < RECV_BATCH)
            return total;
    }
}

static void *drainer_main(void *arg)
{
    drainer *d = arg;
    struct epoll_event ev[256];
    pin_to(HELPER_CPU);
    while (!atomic_load(&d->stop)) {
        int n = epoll_wait(d->ep, ev, 256, 10);
        uint64_t got = 0;
        for (int i = 0; i < n; i++)
            got += drain_socket(d->r->fds[ev[i].data.u32]);
        atomic_fetch_add(&d->received, got);
    }
    return NULL;
}

static void drainer_start(drainer *d, const receivers *r, pthread_t *t)
{
    d->r = r;
    d->ep = epoll_create1(0);
    atomic_init(&d->received, 0);
    atomic_init(&d->stop, 0);
    for (uint32_t i = 0; i < r->n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        if (epoll_ctl(d->ep, EPOLL_CTL_ADD, r->fds[i], &ev) != 0) {
            perror("epoll_ctl");
            exit(1);
        }
    }
    if (pthread_create(t, NULL, drainer_main, d) != 0)
        exit(1);
}

/* Waits (bounded) until the reader has every datagram sent so far, so the
 * next variant starts with empty queues. */
static void drainer_catch_up(drainer *d, uint64_t sent)
{
    uint64_t end = kzb_now_ns() + CATCH_UP_NS;
    while (atomic_load(&d->received) < sent && kzb_now_ns() < end)
        nap_ns(200000);
}

typedef struct {
    double wall_us, cpu_us;
} per_item;

static per_item time_sends(sender *s, uint32_t batch)
{
    static double chunk[SEND_CHUNKS];
    uint64_t c0 = thread_cpu_ns();
    for (uint32_t k = 0; k < SEND_CHUNKS; k++) {
        uint64_t t0 = kzb_now_ns();
        send_datagrams(s, SEND_CHUNK, batch);
        chunk[k] = (double)(kzb_now_ns() - t0) / 1e3 / SEND_CHUNK;
    }
    uint64_t c1 = thread_cpu_ns();
    return (per_item){quantile(chunk, SEND_CHUNKS, 0.5),
                      (double)(c1 - c0) / 1e3 / SEND_DATAGRAMS};
}

#define SEND_VARIANTS 4u
static const uint32_t send_batch[SEND_VARIANTS] = {1, 16, 64, 256};

typedef struct {
    double wall[2][SEND_VARIANTS][MAX_RUNS], cpu[2][SEND_VARIANTS][MAX_RUNS];
    uint64_t sent_drained;
} send_figures;

static void report_send(const send_figures *f, size_t runs, uint64_t received)
{
    static const char *const mode[2] = {"drained", "dropped"};
    char name[96];
    for (int m = 0; m < 2; m++) {
        for (uint32_t v = 0; v < SEND_VARIANTS; v++) {
            snprintf(name, sizeof name, "send %s, %s %u", mode[m], v ? "sendmmsg" : "sendmsg",
                     send_batch[v]);
            kzb_report(name, "us/dgram", f->wall[m][v], runs);
            snprintf(name, sizeof name, "  (thread CPU) %s %u", v ? "sendmmsg" : "sendmsg",
                     send_batch[v]);
            kzb_report(name, "us/dgram", f->cpu[m][v], runs);
        }
        for (uint32_t v = 1; v < SEND_VARIANTS; v++) {
            double ratio[MAX_RUNS];
            for (size_t i = 0; i < runs; i++)
                ratio[i] = f->wall[m][0][i] / f->wall[m][v][i];
            snprintf(name, sizeof name, "send %s: sendmsg / sendmmsg %u", mode[m], send_batch[v]);
            kzb_report(name, "x", ratio, runs);
        }
    }
    printf("drained set: %llu of %llu datagrams read by the other core\n",
           (unsigned long long)received, (unsigned long long)f->sent_drained);
}

static void part_send(size_t runs)
{
    static sender s;
    static receivers drained, dropped;
    static send_figures f;
    pthread_t t;
    drainer d;
    sender_init(&s, opt.bytes);
    receivers_open(&drained, opt.dests, -1);
    receivers_open(&dropped, opt.dests, 0); /* the kernel's minimum buffer */
    drainer_start(&d, &drained, &t);
    sender_aim(&s, &dropped);
    send_datagrams(&s, opt.dests * DROP_PREFILL, 64);
    for (size_t i = 0; i < runs; i++)
        for (uint32_t k = 0; k < SEND_VARIANTS; k++) {
            uint32_t v = (uint32_t)(k + i) % SEND_VARIANTS; /* rotate the order */
            sender_aim(&s, &drained);
            per_item a = time_sends(&s, send_batch[v]);
            f.sent_drained += SEND_DATAGRAMS;
            drainer_catch_up(&d, f.sent_drained);
            sender_aim(&s, &dropped);
            per_item b = time_sends(&s, send_batch[v]);
            f.wall[0][v][i] = a.wall_us, f.cpu[0][v][i] = a.cpu_us;
            f.wall[1][v][i] = b.wall_us, f.cpu[1][v][i] = b.cpu_us;
        }
    atomic_store(&d.stop, 1);
    pthread_join(t, NULL);
    report_send(&f, runs, atomic_load(&d.received));
    if (s.errors)
        printf("send errors: %llu\n", (unsigned long long)s.errors);
    close(d.ep);
    receivers_close(&drained);
    receivers_close(&dropped);
    close(s.fd);
}

/* ---- recv: one socket, recvmsg against recvmmsg ------------------------------- */

typedef struct {
    int fd;
    uint8_t buf[RECV_BATCH][MAX_BYTES];
    struct sockaddr_in from[RECV_BATCH];
    struct iovec iov[RECV_BATCH];
    struct mmsghdr m[RECV_BATCH];
    uint64_t short_fills;
} reader;

/* Re-arms the headers (recvmmsg writes msg_namelen and msg_len back), as a
 * receive loop must before every call. */
static void reader_arm(reader *r, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        r->iov[i] = (struct iovec){.iov_base = r->buf[i], .iov_len = MAX_BYTES};
        r->m[i].msg_hdr = (struct msghdr){.msg_name = &r->from[i], .msg_namelen = sizeof r->from[i],
                                          .msg_iov = &r->iov[i], .msg_iovlen = 1};
    }
}

/* Reads `want` queued datagrams, `batch` per call (1 = recvmsg); returns
 * how many arrived (fewer only if the kernel dropped some). */
static uint32_t read_datagrams(reader *r, uint32_t want, uint32_t batch)
{
    uint32_t got = 0, empty = 0;
    while (got < want && empty < 1000) {
        uint32_t b = want - got < batch ? want - got : batch;
        reader_arm(r, b);
        int n = batch == 1 ? (int)(recvmsg(r->fd, &r->m[0].msg_hdr, MSG_DONTWAIT) > 0)
                           : recvmmsg(r->fd, r->m, b, MSG_DONTWAIT, NULL);
        if (n > 0)
            got += (uint32_t)n;
        else
            empty++;
    }
    return got;
}

static double time_drains(reader *r, sender *s, uint32_t batch)
{
    double drain[RECV_FILLS];
    for (uint32_t f = 0; f < RECV_FILLS; f++) {
        send_datagrams(s, RECV_FILL, MAX_BATCH);
        uint64_t t0 = kzb_now_ns();
        uint32_t got = read_datagrams(r, RECV_FILL, batch);
        drain[f] = (double)(kzb_now_ns() - t0) / 1e3 / RECV_FILL;
        r->short_fills += got < RECV_FILL;
        (void)read_datagrams(r, RECV_FILL, RECV_BATCH); /* anything late, untimed */
    }
    return quantile(drain, RECV_FILLS, 0.5);
}

static double time_empty_reads(reader *r, uint32_t batch)
{
    double chunk[EMPTY_CHUNKS];
    for (uint32_t k = 0; k < EMPTY_CHUNKS; k++) {
        uint64_t t0 = kzb_now_ns();
        for (uint32_t i = 0; i < EMPTY_CHUNK; i++) {
            reader_arm(r, 1);
            if (batch == 1)
                (void)recvmsg(r->fd, &r->m[0].msg_hdr, MSG_DONTWAIT);
            else
                (void)recvmmsg(r->fd, r->m, batch, MSG_DONTWAIT, NULL);
        }
        chunk[k] = (double)(kzb_now_ns() - t0) / 1e3 / EMPTY_CHUNK;
    }
    return quantile(chunk, EMPTY_CHUNKS, 0.5);
}

static void part_recv(size_t runs)
{
    static reader r;
    static sender s;
    static receivers one;
    double msg[MAX_RUNS], mmsg[MAX_RUNS], ratio[MAX_RUNS], e1[MAX_RUNS], e64[MAX_RUNS];
    int size = RECV_BUFFER_BYTES;
    r.fd = udp_loopback(&one.addr[0]);
    one.n = 1;
    if (setsockopt(r.fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
        (void)setsockopt(r.fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    sender_init(&s, opt.bytes);
    sender_aim(&s, &one);
    for (size_t i = 0; i < runs; i++) {
        int first = (int)(i % 2);
        double a = first ? time_drains(&r, &s, RECV_BATCH) : 0;
        msg[i] = time_drains(&r, &s, 1);
        mmsg[i] = first ? a : time_drains(&r, &s, RECV_BATCH);
        ratio[i] = msg[i] / mmsg[i];
        e1[i] = time_empty_reads(&r, 1);
        e64[i] = time_empty_reads(&r, RECV_BATCH);
    }
    kzb_report("recv: recvmsg, one per datagram", "us/dgram", msg, runs);
    kzb_report("recv: recvmmsg 64", "us/dgram", mmsg, runs);
    kzb_report("recv: recvmsg / recvmmsg 64", "x", ratio, runs);
    kzb_report("recv: empty recvmsg (EAGAIN)", "us/call", e1, runs);
    kzb_report("recv: empty recvmmsg 64 (EAGAIN)", "us/call", e64, runs);
    if (r.short_fills)
        printf("recv: %llu drains found fewer datagrams than were sent\n",
               (unsigned long long)r.short_fills);
    close(r.fd);
    close(s.fd);
}

/* ---- enet: a host's fixed cost per pass ----------------------------------------- */

typedef struct {
    ENetHost *server, *wide_empty, *empty;
    ENetHost *clients[MAX_CLIENT_HOSTS];
    uint32_t n_clients, up_server, up_client;
    _Atomic int stop;
} enet_rig;

static ENetHost *enet_listener(uint32_t slots)
{
    ENetAddress a = {.host = htonl(INADDR_LOOPBACK), .port = 0};
    ENetHost *h = enet_host_create(&a, slots, KZ_CHANNEL_COUNT, 0, 0);
    if (h == NULL) {
        fprintf(stderr, "enet_host_create(%u slots) failed\n", slots);
        exit(1);
    }
    return h;
}

/* Services one host with no wait and counts the connects it reports. */
static uint32_t enet_pump(ENetHost *h)
{
    ENetEvent ev;
    uint32_t ups = 0;
    int rc = enet_host_service(h, &ev, 0);
    while (rc > 0) {
        ups += ev.type == ENET_EVENT_TYPE_CONNECT;
        if (ev.type == ENET_EVENT_TYPE_RECEIVE)
            enet_packet_destroy(ev.packet);
        rc = enet_host_check_events(h, &ev);
    }
    return ups;
}

static void enet_pump_all(enet_rig *g)
{
    g->up_server += enet_pump(g->server);
    for (uint32_t c = 0; c < g->n_clients; c++)
        g->up_client += enet_pump(g->clients[c]);
}

/* Connects `peers` client peers in waves (the server's receive buffer
 * would drop a burst of thousands), pumping both sides until each wave is
 * up or the deadline passes. Returns the number connected. */
static uint32_t enet_connect_all(enet_rig *g, uint32_t peers)
{
    uint64_t deadline = kzb_now_ns() + CONNECT_DEADLINE_NS;
    g->n_clients = (peers + CLIENT_HOST_PEERS - 1) / CLIENT_HOST_PEERS;
    for (uint32_t c = 0; c < g->n_clients; c++)
        if ((g->clients[c] = enet_host_create(NULL, CLIENT_HOST_PEERS, KZ_CHANNEL_COUNT, 0, 0)) == NULL)
            exit(1);
    for (uint32_t i = 0; i < peers && kzb_now_ns() < deadline;) {
        uint32_t wave_end = i + CONNECT_WAVE < peers ? i + CONNECT_WAVE : peers;
        for (; i < wave_end; i++)
            (void)enet_host_connect(g->clients[i / CLIENT_HOST_PEERS], &g->server->address,
                                    KZ_CHANNEL_COUNT, 0);
        while ((g->up_server < wave_end || g->up_client < wave_end) && kzb_now_ns() < deadline) {
            enet_pump_all(g);
            nap_ns(100000);
        }
    }
    return g->up_server < g->up_client ? g->up_server : g->up_client;
}

/* Services one host with no wait; nonzero if it received anything. */
static uint32_t enet_pump_busy(ENetHost *h)
{
    uint32_t before = h->totalReceivedPackets;
    (void)enet_pump(h);
    return h->totalReceivedPackets - before;
}

/* Keeps the client side alive (answers pings, sends its own) from the
 * other core while this thread measures the server host, answering
 * promptly: ENet's retransmission timeout follows the measured round trip,
 * which is short on loopback, so a slow answer means resends. */
static void *enet_keeper(void *arg)
{
    enet_rig *g = arg;
    pin_to(HELPER_CPU);
    while (!atomic_load(&g->stop)) {
        uint32_t busy = 0;
        for (uint32_t c = 0; c < g->n_clients; c++)
            busy += enet_pump_busy(g->clients[c]);
        if (!busy)
            nap_ns(KEEPER_NAP_NS);
    }
    return NULL;
}

/* `n` calls of enet_host_service(h, &ev, 0) (flush = 0) or
 * enet_host_flush (flush = 1), events drained as a server would. */
static void enet_calls(ENetHost *h, int flush, uint32_t n)
{
    ENetEvent ev;
    for (uint32_t i = 0; i < n; i++) {
        if (flush) {
            enet_host_flush(h);
            continue;
        }
        int rc = enet_host_service(h, &ev, 0);
        while (rc > 0) {
            if (ev.type == ENET_EVENT_TYPE_RECEIVE)
                enet_packet_destroy(ev.packet);
            rc = enet_host_check_events(h, &ev);
        }
    }
}

/* Writes a scratch area several times the L2 size, as the replicator's
 * streaming through a tick's images leaves the caches for the next pass. */
static void evict_caches(uint8_t *scratch)
{
    for (size_t at = 0; at < COLD_SCRATCH_BYTES; at += 64)
        scratch[at] = (uint8_t)(scratch[at] + 1);
}

#define ENET_CASES 6u
#define ENET_COLD_CASES 4u

static uint32_t enet_connected(const ENetHost *h)
{
    uint32_t n = 0;
    for (size_t i = 0; i < h->peerCount; i++)
        n += h->peers[i].state == ENET_PEER_STATE_CONNECTED;
    return n;
}

typedef struct {
    double warm[ENET_CASES][MAX_RUNS], cold[ENET_COLD_CASES][MAX_RUNS];
    double sent[MAX_RUNS], received[MAX_RUNS];
} enet_figures;

/* Prints a host's three figures for one call (warm with peers, warm empty,
 * a second empty size or cold) and the per-peer difference. */
static void report_per_peer(const char *what, const double *with, const double *empty, size_t runs,
                            uint32_t up)
{
    char name[160];  /* room for any `what` a caller's 96-byte name holds */
    double per_peer[MAX_RUNS];
    for (size_t i = 0; i < runs; i++)
        per_peer[i] = (with[i] - empty[i]) * 1e3 / up;
    snprintf(name, sizeof name, "enet %s: per connected peer", what);
    kzb_report(name, "ns/peer", per_peer, runs);
}

static void report_enet(const enet_figures *f, size_t runs, uint32_t up, uint32_t slots)
{
    char name[96];
    static const char *const what[2] = {"service(0)", "flush"};
    for (int k = 0; k < 2; k++) {
        double per_slot[MAX_RUNS];
        snprintf(name, sizeof name, "enet %s, %u idle peers", what[k], up);
        kzb_report(name, "us/call", f->warm[k], runs);
        snprintf(name, sizeof name, "enet %s, empty host, %u slots", what[k], slots);
        kzb_report(name, "us/call", f->warm[2 + k], runs);
        snprintf(name, sizeof name, "enet %s, empty host, %u slots", what[k], WIDE_HOST_SLOTS);
        kzb_report(name, "us/call", f->warm[4 + k], runs);
        report_per_peer(what[k], f->warm[k], f->warm[2 + k], runs, up);
        for (size_t i = 0; i < runs; i++)
            per_slot[i] = (f->warm[4 + k][i] - f->warm[2 + k][i]) * 1e3 / (WIDE_HOST_SLOTS - slots);
        snprintf(name, sizeof name, "enet %s: per free slot", what[k]);
        kzb_report(name, "ns/slot", per_slot, runs);
        snprintf(name, sizeof name, "enet %s cold, %u idle peers", what[k], up);
        kzb_report(name, "us/call", f->cold[k], runs);
        snprintf(name, sizeof name, "enet %s cold, empty host, %u slots", what[k], slots);
        kzb_report(name, "us/call", f->cold[2 + k], runs);
        snprintf(name, sizeof name, "%s cold", what[k]);
        report_per_peer(name, f->cold[k], f->cold[2 + k], runs, up);
    }
    kzb_report("enet: server datagrams sent while idle", "dgram/s", f->sent, runs);
    kzb_report("enet: server datagrams received while idle", "dgram/s", f->received, runs);
}

/* One run. Warm: the six cases (three hosts, service or flush) in short
 * slices of calls back to back, round-robin for the whole window, so the
 * server host is serviced every few milliseconds and its peers stay
 * answered, and noise hits every case alike; the figure is the median
 * slice. Cold: one call at a time after evicting the caches, rotating over
 * the four cases of the two 1,000-slot hosts; the figure is the median
 * call. */
static void enet_run(enet_figures *f, size_t i, ENetHost *const hosts[3], uint8_t *scratch)
{
    static double slice[ENET_CASES][ENET_MAX_SLICES], cold[ENET_COLD_CASES][ENET_COLD_CALLS];
    uint32_t n = 0, sent0 = hosts[0]->totalSentPackets, received0 = hosts[0]->totalReceivedPackets;
    uint64_t w0 = kzb_now_ns(), end = w0 + ENET_WINDOW_NS, w1;
    do {
        for (uint32_t c = 0; c < ENET_CASES; c++) {
            uint64_t t0 = kzb_now_ns();
            enet_calls(hosts[c / 2], (int)(c % 2), ENET_CALLS_PER_SLICE);
            slice[c][n] = (double)(kzb_now_ns() - t0) / 1e3 / ENET_CALLS_PER_SLICE;
        }
    } while (++n < ENET_MAX_SLICES && (w1 = kzb_now_ns()) < end);
    w1 = kzb_now_ns();
    for (uint32_t c = 0; c < ENET_CASES; c++)
        f->warm[c][i] = quantile(slice[c], n, 0.5);
    f->sent[i] = (double)(hosts[0]->totalSentPackets - sent0) * 1e9 / (double)(w1 - w0);
    f->received[i] = (double)(hosts[0]->totalReceivedPackets - received0) * 1e9 / (double)(w1 - w0);
    for (uint32_t k = 0; k < ENET_COLD_CALLS * ENET_COLD_CASES; k++) {
        uint32_t c = k % ENET_COLD_CASES;
        evict_caches(scratch);
        uint64_t t0 = kzb_now_ns();
        enet_calls(hosts[c / 2], (int)(c % 2), 1);
        cold[c][k / ENET_COLD_CASES] = (double)(kzb_now_ns() - t0) / 1e3;
    }
    for (uint32_t c = 0; c < ENET_COLD_CASES; c++)
        f->cold[c][i] = quantile(cold[c], ENET_COLD_CALLS, 0.5);
}

static void part_enet(size_t runs)
{
    static enet_rig g;
    static enet_figures f;
    pthread_t t;
    uint8_t *scratch = calloc(1, COLD_SCRATCH_BYTES);
    g.server = enet_listener(opt.peers);
    g.empty = enet_listener(opt.peers);
    g.wide_empty = enet_listener(WIDE_HOST_SLOTS);
    uint64_t t0 = kzb_now_ns();
    uint32_t up = enet_connect_all(&g, opt.peers);
    printf("enet: %u of %u peers connected in %.2f s; sizeof(ENetPeer) %zu B\n", up, opt.peers,
           (double)(kzb_now_ns() - t0) / 1e9, sizeof(ENetPeer));
    if (up == 0 || scratch == NULL)
        exit(1);
    atomic_init(&g.stop, 0);
    if (pthread_create(&t, NULL, enet_keeper, &g) != 0)
        exit(1);
    ENetHost *const hosts[3] = {g.server, g.empty, g.wide_empty};
    for (size_t i = 0; i < runs; i++)
        enet_run(&f, i, hosts, scratch);
    atomic_store(&g.stop, 1);
    pthread_join(t, NULL);
    printf("enet: %u peers still connected at the end\n", enet_connected(g.server));
    report_enet(&f, runs, up, opt.peers);
    for (uint32_t c = 0; c < g.n_clients; c++)
        enet_host_destroy(g.clients[c]);
    enet_host_destroy(g.server);
    enet_host_destroy(g.empty);
    enet_host_destroy(g.wide_empty);
    free(scratch);
}

/* ---- timer: the pause between passes ----------------------------------------------- */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
} waiter;

static void waiter_init(waiter *w)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &a);
    pthread_condattr_destroy(&a);
    pthread_mutex_init(&w->lock, NULL);
}

/* One pause as the server's I/O thread takes it: an absolute deadline
 * PASS_WAIT_NS from now, nobody signalling. */
static void cond_pause(waiter *w)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += PASS_WAIT_NS;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->lock);
    while (pthread_cond_timedwait(&w->cond, &w->lock, &until) == 0)
        ;
    pthread_mutex_unlock(&w->lock);
}

typedef struct {
    double cpu_us, median_us, p99_us;
} timer_sample;

static timer_sample time_pauses(waiter *w, int use_cond, unsigned long slack_ns)
{
    static double wall[TIMER_WAITS];
    unsigned long old = (unsigned long)prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    (void)prctl(PR_SET_TIMERSLACK, slack_ns, 0, 0, 0);
    uint64_t c0 = thread_cpu_ns();
    for (uint32_t i = 0; i < TIMER_WAITS; i++) {
        uint64_t t0 = kzb_now_ns();
        if (use_cond)
            cond_pause(w);
        else
            nap_ns(PASS_WAIT_NS);
        wall[i] = (double)(kzb_now_ns() - t0) / 1e3;
    }
    uint64_t c1 = thread_cpu_ns();
    (void)prctl(PR_SET_TIMERSLACK, old, 0, 0, 0);
    timer_sample s = {.cpu_us = (double)(c1 - c0) / 1e3 / TIMER_WAITS};
    s.median_us = quantile(wall, TIMER_WAITS, 0.5);
    s.p99_us = quantile(wall, TIMER_WAITS, 0.99);
    return s;
}

#define TIMER_CASES 4u

static void part_timer(size_t runs)
{
    static const char *const name[TIMER_CASES] = {
        "cond_timedwait 250us", "nanosleep 250us", "cond_timedwait 250us, slack 1us",
        "nanosleep 250us, slack 1us"};
    static double cpu[TIMER_CASES][MAX_RUNS], med[TIMER_CASES][MAX_RUNS], p99[TIMER_CASES][MAX_RUNS];
    unsigned long slack = (unsigned long)prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    waiter w;
    waiter_init(&w);
    for (size_t i = 0; i < runs; i++)
        for (uint32_t k = 0; k < TIMER_CASES; k++) {
            uint32_t c = (uint32_t)(k + i) % TIMER_CASES;
            timer_sample s = time_pauses(&w, c % 2 == 0, c < 2 ? slack : SLACK_TIGHT_NS);
            cpu[c][i] = s.cpu_us, med[c][i] = s.median_us, p99[c][i] = s.p99_us;
        }
    printf("timer: default timer slack of this thread %lu ns\n", slack);
    for (uint32_t c = 0; c < TIMER_CASES; c++) {
        char label[96];
        snprintf(label, sizeof label, "%s: CPU per wait", name[c]);
        kzb_report(label, "us", cpu[c], runs);
        snprintf(label, sizeof label, "%s: wall, median", name[c]);
        kzb_report(label, "us", med[c], runs);
        snprintf(label, sizeof label, "%s: wall, p99", name[c]);
        kzb_report(label, "us", p99[c], runs);
    }
}

int main(int argc, char **argv)
{
    kzb_begin(argc, argv, "I/O costs below the transport: loopback UDP, ENet passes, pass timer");
    parse_args(argc, argv);
    raise_fd_limit();
    pin_to(MEASURE_CPU);
    if (enet_initialize() != 0)
        return 1;
    size_t runs = kzb_runs();
    printf("%u destinations, %u-byte datagrams, %u ENet peers; measuring on core %d, helpers on core %d\n",
           opt.dests, opt.bytes, opt.peers, MEASURE_CPU, HELPER_CPU);
    if (part_on("floor"))
        part_floor(runs);
    if (part_on("send"))
        part_send(runs);
    if (part_on("recv"))
        part_recv(runs);
    if (part_on("enet"))
        part_enet(runs);
    if (part_on("timer"))
        part_timer(runs);
    enet_deinitialize();
    kzb_end();
    return 0;
}
