/*
 * kizuna-bench fleet mode: the processes it starts (kizuna-server,
 * nats-server) and the few things it reads from them: CPU time from
 * /proc, a number from a log line, a number from a loopback HTTP page.
 *
 * A kzb_procs table holds every child; its functions take the table's
 * lock, so the main thread may start and stop children while a guard
 * thread watches for one that died. Children run in their own process
 * group (a terminal's Ctrl-C reaches kizuna-bench alone, which stops them
 * in order) and get SIGKILL if the thread that started them dies
 * (PR_SET_PDEATHSIG), so none outlives a killed kizuna-bench.
 */
#ifndef KZB_PROC_H
#define KZB_PROC_H

#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define KZB_PROCS_MAX 72u       /* nats-server, an authority and up to 64 edges, and room */
#define KZB_PROC_NAME_LEN 32u
#define KZB_PROC_STOP_MS 5000u  /* SIGTERM, then SIGKILL after this long */

typedef struct kzb_proc {
    char name[KZB_PROC_NAME_LEN];  /* "kizuna-server", "nats-server", "authority", "edge 2" */
    char log[PATH_MAX];            /* its stdout and stderr */
    pid_t pid;
    int exited;                    /* reaped; status holds the wait status */
    int status;
    int stopping;                  /* we asked it to stop: its exit is no failure */
} kzb_proc;

typedef struct kzb_procs {
    pthread_mutex_t lock;
    kzb_proc p[KZB_PROCS_MAX];
    uint32_t n;
} kzb_procs;

void kzb_procs_init(kzb_procs *ps);

/* Starts argv[0] (a path) with stdout and stderr appended to `log`; a
 * process that is to exit by itself (keygen) has `expect_exit` set, so its
 * exit is no failure. Returns its index in the table, or -1 with a
 * message on stderr. */
int kzb_proc_spawn(kzb_procs *ps, const char *name, char *const argv[], const char *log,
                   int expect_exit);

/* Stops process `i` (SIGTERM, SIGKILL after KZB_PROC_STOP_MS) and reaps
 * it; harmless when it has already exited. Returns its wait status. */
int kzb_proc_stop(kzb_procs *ps, int i);

/* Waits up to timeout_ms for process `i` to exit by itself (its exit is
 * expected: the guard does not report it) and returns its wait status;
 * -1 when it did not, and it is then stopped as by kzb_proc_stop. */
int kzb_proc_wait(kzb_procs *ps, int i, uint32_t timeout_ms);

/* Stops every running process of the table at once (SIGTERM to all, then
 * SIGKILL to those still there after KZB_PROC_STOP_MS) and reaps them. */
void kzb_procs_stop_all(kzb_procs *ps);

/* Reaps children that exited and returns the index of one that exited
 * without being asked to (its exit reported once), or -1. */
int kzb_procs_died(kzb_procs *ps);

/* "exited with status 1", "was killed by signal 9", in out; returns out. */
char *kzb_proc_how(int status, char *out, size_t cap);

/* Prints the last `lines` lines of a log file to stderr, each prefixed. */
void kzb_log_tail(const char *path, const char *prefix, uint32_t lines);

/* CPU seconds (user + system) process `pid` has used, from
 * /proc/PID/stat; 0 or -1 when it cannot be read. */
int kzb_proc_cpu_seconds(pid_t pid, double *out);

/* In the log file, the first line holding `"event":"EVENT"`: 0 when there
 * is one (and, when key is not NULL, *out is its "key": number), else -1. */
int kzb_log_event(const char *path, const char *event, const char *key, uint64_t *out);

/* GET http://127.0.0.1:PORT/PATH (HTTP/1.0, 2 s timeouts): the body,
 * NUL-terminated, in a malloc'd buffer the caller frees; NULL on failure. */
char *kzb_http_get(uint16_t port, const char *path);

/* The unsigned number after the first occurrence of `key` in `text`
 * (spaces, tabs and one ':' skipped): 0, or -1 when absent or not a
 * number. The key carries its own delimiters ("\"in_bytes\"",
 * "\nkizuna_bus_bytes_in_total ") so that no longer name matches. */
int kzb_find_u64(const char *text, const char *key, uint64_t *out);

/* A TCP port on 127.0.0.1 free at the time of the call: 0 or -1. */
int kzb_free_tcp_port(uint16_t *out);

/* Removes a directory tree (no symlink followed): 0 or -1. */
int kzb_rmtree(const char *dir);

#endif /* KZB_PROC_H */
