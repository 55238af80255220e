/*
 * kizuna-bench fleet mode: child processes, /proc, logs and loopback HTTP
 * (see proc.h). Nothing here is on a hot path: a run starts a handful of
 * processes and reads a few numbers from each twice.
 */
#define _GNU_SOURCE
#include "proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KZB_HTTP_MAX (1u << 20)  /* /metrics of a big server is well under this */
#define KZB_LOG_MAX (4u << 20)   /* log bytes read when looking for an event */

static void pause_ms(uint32_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
    nanosleep(&ts, NULL);
}

void kzb_procs_init(kzb_procs *ps)
{
    memset(ps, 0, sizeof *ps);
    pthread_mutex_init(&ps->lock, NULL);
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void child_exec(char *const argv[], const char *log, pid_t parent)
{
    sigset_t none;
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);  /* the parent is already gone */
    (void)setpgid(0, 0);
    /* Dispositions kizuna-bench inherited (SIG_IGN from a background
     * shell) would pass on through exec: give the child the defaults. */
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT};
    for (size_t k = 0; k < sizeof sigs / sizeof sigs[0]; k++)
        (void)signal(sigs[k], SIG_DFL);
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || null < 0 || dup2(null, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
        _exit(126);
    execv(argv[0], argv);
    static const char msg[] = "kizuna-bench: exec failed\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(127);
}

int kzb_proc_spawn(kzb_procs *ps, const char *name, char *const argv[], const char *log,
                   int expect_exit)
{
    pthread_mutex_lock(&ps->lock);
    if (ps->n == KZB_PROCS_MAX) {
        pthread_mutex_unlock(&ps->lock);
        fprintf(stderr, "kizuna-bench: too many processes\n");
        return -1;
    }
    kzb_proc *p = &ps->p[ps->n];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->log, sizeof p->log, "%s", log);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        child_exec(argv, p->log, parent);
    if (pid < 0) {
        pthread_mutex_unlock(&ps->lock);
        fprintf(stderr, "kizuna-bench: cannot start %s: %s\n", name, strerror(errno));
        return -1;
    }
    p->pid = pid;
    p->stopping = expect_exit;
    int i = (int)ps->n++;
    pthread_mutex_unlock(&ps->lock);
    return i;
}

/* Reaps p if it has exited; 1 when it is gone (now or before). Under lock. */
static int reap(kzb_proc *p)
{
    if (p->pid == 0 || p->exited)
        return 1;
    int status;
    pid_t r = waitpid(p->pid, &status, WNOHANG);
    if (r == p->pid || (r < 0 && errno == ECHILD)) {
        p->exited = 1;
        p->status = r == p->pid ? status : 0;
        return 1;
    }
    return 0;
}

/* SIGTERM to every running p[i] with want[i], then SIGKILL to those left
 * after KZB_PROC_STOP_MS; reaps them all. Under lock. */
static void stop_marked(kzb_procs *ps, const uint8_t *want)
{
    for (uint32_t i = 0; i < ps->n; i++)
        if (want[i] && !reap(&ps->p[i])) {
            ps->p[i].stopping = 1;
            (void)kill(ps->p[i].pid, SIGTERM);
        }
    for (uint32_t waited = 0;; waited += 20) {
        int left = 0;
        for (uint32_t i = 0; i < ps->n; i++)
            left += want[i] && !reap(&ps->p[i]);
        if (!left)
            return;
        if (waited >= KZB_PROC_STOP_MS)
            break;
        pause_ms(20);
    }
    for (uint32_t i = 0; i < ps->n; i++)
        if (want[i] && !reap(&ps->p[i])) {
            fprintf(stderr, "kizuna-bench: %s (pid %d) did not stop within %u s: killed\n",
                    ps->p[i].name, (int)ps->p[i].pid, KZB_PROC_STOP_MS / 1000u);
            (void)kill(ps->p[i].pid, SIGKILL);
            int status;
            while (waitpid(ps->p[i].pid, &status, 0) < 0 && errno == EINTR)
                ;
            ps->p[i].exited = 1;
            ps->p[i].status = status;
        }
}

int kzb_proc_stop(kzb_procs *ps, int i)
{
    uint8_t want[KZB_PROCS_MAX] = {0};
    pthread_mutex_lock(&ps->lock);
    want[i] = 1;
    ps->p[i].stopping = 1;
    stop_marked(ps, want);
    int status = ps->p[i].status;
    pthread_mutex_unlock(&ps->lock);
    return status;
}

int kzb_proc_wait(kzb_procs *ps, int i, uint32_t timeout_ms)
{
    for (uint32_t waited = 0;; waited += 20) {
        pthread_mutex_lock(&ps->lock);
        ps->p[i].stopping = 1;
        int gone = reap(&ps->p[i]);
        int status = ps->p[i].status;
        pthread_mutex_unlock(&ps->lock);
        if (gone)
            return status;
        if (waited >= timeout_ms)
            break;
        pause_ms(20);
    }
    (void)kzb_proc_stop(ps, i);
    return -1;
}

void kzb_procs_stop_all(kzb_procs *ps)
{
    uint8_t want[KZB_PROCS_MAX];
    memset(want, 1, sizeof want);
    pthread_mutex_lock(&ps->lock);
    for (uint32_t i = 0; i < ps->n; i++)
        ps->p[i].stopping = 1;
    stop_marked(ps, want);
    pthread_mutex_unlock(&ps->lock);
}

int kzb_procs_died(kzb_procs *ps)
{
    int found = -1;
    pthread_mutex_lock(&ps->lock);
    for (uint32_t i = 0; i < ps->n && found < 0; i++) {
        kzb_proc *p = &ps->p[i];
        if (!p->stopping && !p->exited && reap(p)) {
            p->stopping = 1;  /* reported once */
            found = (int)i;
        }
    }
    pthread_mutex_unlock(&ps->lock);
    return found;
}

char *kzb_proc_how(int status, char *out, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(out, cap, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, cap, "was killed by signal %d", WTERMSIG(status));
    else
        snprintf(out, cap, "stopped (wait status %d)", status);
    return out;
}

/* The whole file (at most KZB_LOG_MAX bytes from its end), NUL-terminated,
 * malloc'd; NULL when it cannot be read. */
static char *slurp_tail(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    long size = 0;
    if (fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    if (size > (long)KZB_LOG_MAX)
        (void)fseek(f, size - (long)KZB_LOG_MAX, SEEK_SET);
    else
        rewind(f);
    char *buf = malloc(KZB_LOG_MAX + 1u);
    size_t len = buf ? fread(buf, 1, KZB_LOG_MAX, f) : 0;
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

void kzb_log_tail(const char *path, const char *prefix, uint32_t lines)
{
    char *text = slurp_tail(path);
    if (!text)
        return;
    size_t len = strlen(text);
    size_t start = len;
    for (uint32_t seen = 0; start > 0; start--)
        if (text[start - 1] == '\n' && start != len && ++seen == lines)
            break;
    for (char *line = strtok(text + start, "\n"); line; line = strtok(NULL, "\n"))
        fprintf(stderr, "%s%.400s\n", prefix, line);
    free(text);
}

int kzb_proc_cpu_seconds(pid_t pid, double *out)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    /* The command name may hold spaces and parentheses: fields are
     * counted from the last ')'. utime and stime are fields 14 and 15. */
    char *p = strrchr(buf, ')');
    unsigned long long utime, stime;
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                     &stime) != 2)
        return -1;
    *out = (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
    return 0;
}

int kzb_find_u64(const char *text, const char *key, uint64_t *out)
{
    const char *p = strstr(text, key);
    if (!p)
        return -1;
    p += strlen(key);
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == ':')
        p++;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p < '0' || *p > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 10);
    if (errno)
        return -1;
    *out = v;
    return 0;
}

int kzb_log_event(const char *path, const char *event, const char *key, uint64_t *out)
{
    char want[96];
    snprintf(want, sizeof want, "\"event\":\"%.64s\"", event);
    char *text = slurp_tail(path);
    if (!text)
        return -1;
    int rc = -1;
    char *at = strstr(text, want);
    if (at) {
        char *eol = strchr(at, '\n');
        char *bol = at;
        while (bol > text && bol[-1] != '\n')
            bol--;
        if (eol)
            *eol = '\0';
        rc = 0;
        if (key) {
            char k[80];
            snprintf(k, sizeof k, "\"%.64s\":", key);
            rc = kzb_find_u64(bol, k, out);
        }
    }
    free(text);
    return rc;
}

static int loopback_socket(uint16_t port, int do_connect)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {2, 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int rc = do_connect ? connect(fd, (struct sockaddr *)&a, sizeof a)
                        : bind(fd, (struct sockaddr *)&a, sizeof a);
    if (rc != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

char *kzb_http_get(uint16_t port, const char *path)
{
    int fd = loopback_socket(port, 1);
    if (fd < 0)
        return NULL;
    char req[256];
    int n = snprintf(req, sizeof req, "GET %.128s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    char *buf = malloc(KZB_HTTP_MAX + 1u);
    size_t len = 0;
    if (!buf || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        free(buf);
        return NULL;
    }
    for (;;) {
        ssize_t got = recv(fd, buf + len, KZB_HTTP_MAX - len, 0);
        if (got > 0 && (len += (size_t)got) < KZB_HTTP_MAX)
            continue;
        if (got < 0 && errno == EINTR)
            continue;
        break;  /* EOF (HTTP/1.0: the server closes), a timeout or full */
    }
    close(fd);
    buf[len] = '\0';
    char *body = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.", 7) != 0 || strncmp(buf + 8, " 200", 4) != 0 || !body) {
        free(buf);
        return NULL;
    }
    memmove(buf, body + 4, len - (size_t)(body + 4 - buf) + 1u);
    return buf;
}

int kzb_free_tcp_port(uint16_t *out)
{
    int fd = loopback_socket(0, 0);
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    if (fd < 0)
        return -1;
    int rc = getsockname(fd, (struct sockaddr *)&a, &alen);
    close(fd);
    if (rc != 0)
        return -1;
    *out = ntohs(a.sin_port);
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int kzb_rmtree(const char *dir)
{
    return nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}
