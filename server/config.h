/*
 * The configuration of `kizuna-server run`: every setting in one table
 * (section, key, type, range, default, help), read from four sources with
 * a fixed precedence:
 *
 *     --flag  >  KIZUNA_* environment variable  >  INI file  >  default
 *
 * Each setting `key` of section `[sec]` is the flag `--key` (underscores as
 * dashes) and the variable `KIZUNA_KEY` (upper case). Zones are INI-only,
 * one section each: `[zone.NAME]` (docs/OPERATIONS.md, "Configuration").
 * The INI syntax is libinih's; this module only interprets the values.
 *
 * Errors: every problem found is reported, not only the first, each as
 * one line naming where it came from ("world.ini:12: tick_hz: ...",
 * "KIZUNA_TICK_HZ: ...", "--tick-hz: ..."), printed to stderr with the
 * program prefix. Loading returns the number of errors; a non-zero count
 * means the config must not be used.
 *
 * Threading: single-threaded program code (getopt keeps global state).
 */
#ifndef KZS_CONFIG_H
#define KZS_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include <kizuna/server.h>

#include "keys.h"

#define KZS_ADDR_TEXT_MAX 64u

/* Where a setting's value came from. */
#define KZS_SRC_DEFAULT 0u
#define KZS_SRC_FILE 1u
#define KZS_SRC_ENV 2u
#define KZS_SRC_FLAG 3u

/* Settings in the table (config.c asserts the count). */
#define KZS_N_SETTINGS 51u

typedef struct kzs_config {
    /* [network] */
    char bind[16];                  /* IPv4 literal */
    char public_address[256];       /* HOST:PORT[,...] tokens name; "" = derived
                                       (public_address.h) */
    uint32_t port, io_threads, max_clients, gate_rate, resume_grace;
    uint64_t protocol_id;
    /* [world] */
    uint32_t tick_hz, max_visible, max_objects, snapshot_history, bytes_per_second;
    uint32_t interest_period, voice_bytes_per_second, chat_per_second, spawn_seed;
    float world_bound, view_radius, view_hysteresis, spawn_radius, voice_radius;
    float personal_space, grab_reach;
    /* [validation] */
    float max_speed, max_accel, head_min, head_max, hand_reach, clock_tolerance;
    float strike_half_life, kick_score;
    /* [roles] */
    char moderator_role[17], admin_role[17];
    /* [keys] */
    char keys[KZS_PATH_MAX];          /* directory of server.key, server.pub, ... */
    char trusted_backend_keys[KZS_PATH_MAX]; /* comma-separated .pub files; empty =
                                               keys/backend.pub */
    char insecure_key_permissions[8]; /* "refuse" (default) or "warn": what loading
                                         does with key files others could change */
    /* [audit] */
    char audit[KZS_PATH_MAX];         /* empty: no audit log */
    uint32_t audit_checkpoint_records, audit_checkpoint_seconds, audit_commit_ms;
    char audit_on_failure[9];         /* "refuse" (default) or "continue": admissions
                                         while the audit log cannot be written */
    /* [admin] */
    char admin[KZS_ADDR_TEXT_MAX];    /* HOST:PORT of the HTTP endpoint, or "off" */
    /* [fleet] */
    char nats[256];                   /* NATS URL(s); "" = no fleet directory */
    char world[33];                   /* the world's name in the directory */
    char nats_credentials[KZS_PATH_MAX]; /* credentials file; "" = none */
    char role[10];                    /* "single", "authority" or "edge" (docs/SCALING.md) */
    uint32_t edge;                    /* role edge: its number 1..64; else 0 */
    /* [server] */
    int32_t log_level;
    uint32_t shutdown_grace;          /* seconds to drain before exiting */
    uint32_t watchdog_seconds;        /* /healthz fails when no tick for this long */

    /* [zone.NAME] sections, in file order. */
    kz_zone_def zones[KZ_ZONE_MAX];
    uint32_t zone_line[KZ_ZONE_MAX];  /* line of each zone's first key */
    uint32_t n_zones;

    /* Provenance, by table index, for `config check`. */
    uint8_t source[KZS_N_SETTINGS];
    uint32_t line[KZS_N_SETTINGS];
    char file[KZS_PATH_MAX];          /* the INI file read, "" for none */
} kzs_config;

/*
 * Builds the effective configuration of `run`: defaults, then the INI file
 * (from --config FILE, else KIZUNA_CONFIG, else none), then KIZUNA_*
 * variables, then the flags in argv (argv[0] is the command name). Errors
 * are printed as they are found. Returns 0 when the result is valid, the
 * number of errors otherwise, or -1 when --help was asked for (usage
 * printed to stdout).
 */
int kzs_config_load(kzs_config *c, int argc, char **argv);

/* Reads only FILE over the defaults (no environment, no flags): what
 * `config check FILE` validates. Returns 0 or the number of errors. */
int kzs_config_load_file(kzs_config *c, const char *file);

/*
 * Prints the effective configuration as an INI file that loads back to the
 * same values, each line commented with its source ("; default",
 * "; world.ini:12", "; KIZUNA_PORT", "; --port"). No secrets are held in
 * the config (only key paths), so the whole of it is printed.
 */
void kzs_config_print(const kzs_config *c, FILE *out);

/* Where problems go: `fn(ctx, line)` (one line, no newline) instead of
 * stderr with the program prefix; NULL restores stderr. A running server
 * sends them to its JSON log. */
typedef void (*kzs_config_report_fn)(void *ctx, const char *line);
void kzs_config_set_report(kzs_config_report_fn fn, void *ctx);

/* Calls fn(ctx, key) for every setting whose value differs between a and
 * b (zones not included). */
void kzs_config_diff(const kzs_config *a, const kzs_config *b,
                     void (*fn)(void *ctx, const char *key), void *ctx);

/* Usage of `run`: every flag with its range and default. */
void kzs_config_usage(FILE *out);

/* Fills the server's settings from `c` (no keys: the caller loads them).
 * Fields of sc->net it does not set (log, allocator, clock) keep what the
 * caller put there, so zero `sc` first. */
void kzs_config_to_server(const kzs_config *c, kz_server_config *sc);

/*
 * Loads the trusted backend keys named by `c` (trusted_backend_keys, or
 * keys/backend.pub) into keys[0..*n). Returns 0 or -1 (printed).
 */
int kzs_config_backend_keys(const kzs_config *c,
                            uint8_t keys[KZ_TOKEN_MAX_BACKEND_KEYS][KZ_SIGN_PUBLIC_KEY_BYTES],
                            uint32_t *n);

#endif /* KZS_CONFIG_H */
