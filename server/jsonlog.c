/*
 * JSON lines for the server's log (jsonlog.h).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "jsonlog.h"

/* "2026-11-24T07:01:30.123Z" */
static void kzs_now_iso(char out[32])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000L);
}

static int kzs_is_word(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_'))
            return 0;
    return 1;
}

static int kzs_is_number(const char *s, size_t n)
{
    if (n == 0 || n > 15) /* exact in a double */
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

/*
 * Adds the logfmt fields of `p` (after the event word) to `obj`. Returns 0,
 * or -1 when the text is not logfmt (the caller then keeps it whole).
 */
static int kzs_add_fields(cJSON *obj, const char *p)
{
    char key[64], val[512];
    while (*p) {
        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        const char *eq = strchr(p, '=');
        const char *sp = strchr(p, ' ');
        if (eq == NULL || (sp && sp < eq) || !kzs_is_word(p, (size_t)(eq - p)) ||
            (size_t)(eq - p) >= sizeof key)
            return -1;
        memcpy(key, p, (size_t)(eq - p));
        key[eq - p] = '\0';
        if (!strcmp(key, "time") || !strcmp(key, "level") || !strcmp(key, "event") ||
            !strcmp(key, "module") || !strcmp(key, "msg"))
            return -1; /* would shadow a line's own fields */
        p = eq + 1;
        size_t n = 0;
        int quoted = *p == '"';
        if (quoted) {
            p++;
            while (*p && *p != '"' && n + 1 < sizeof val) {
                if (*p == '\\' && p[1])
                    p++;
                val[n++] = *p++;
            }
            if (*p != '"')
                return -1;
            p++;
        } else {
            while (*p && *p != ' ' && n + 1 < sizeof val)
                val[n++] = *p++;
        }
        val[n] = '\0';
        if (cJSON_GetObjectItemCaseSensitive(obj, key) != NULL)
            return -1; /* a repeated key: keep the message whole */
        if (!quoted && kzs_is_number(val, n))
            cJSON_AddNumberToObject(obj, key, (double)strtoull(val, NULL, 10));
        else
            cJSON_AddStringToObject(obj, key, val);
    }
    return 0;
}

void kzs_jsonlog_sink(void *ctx, int32_t level, const char *module, const char *msg)
{
    FILE *out = ctx ? (FILE *)ctx : stderr;
    char when[32];
    kzs_now_iso(when);
    cJSON *obj = cJSON_CreateObject();
    if (obj == NULL)
        return;
    cJSON_AddStringToObject(obj, "time", when);
    cJSON_AddStringToObject(obj, "level", kz_log_level_name(level));
    size_t word = strcspn(msg, " ");
    cJSON *fields = cJSON_CreateObject();
    int structured = fields && kzs_is_word(msg, word) && kzs_add_fields(fields, msg + word) == 0;
    if (structured) {
        char event[64];
        snprintf(event, sizeof event, "%.*s", (int)(word < 63 ? word : 63), msg);
        cJSON_AddStringToObject(obj, "event", event);
        cJSON_AddStringToObject(obj, "module", module);
        cJSON *f = fields->child;
        while (f) {
            cJSON *next = f->next;
            cJSON_AddItemToObject(obj, f->string, cJSON_DetachItemViaPointer(fields, f));
            f = next;
        }
    } else {
        cJSON_AddStringToObject(obj, "event", module);
        cJSON_AddStringToObject(obj, "module", module);
        cJSON_AddStringToObject(obj, "msg", msg);
    }
    cJSON_Delete(fields);
    char *line = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (line == NULL)
        return;
    size_t n = strlen(line);
    line[n] = '\n'; /* over the NUL: one fwrite for the whole line */
    fwrite(line, 1, n + 1, out);
    fflush(out);
    cJSON_free(line);
}

kz_log kzs_jsonlog(int32_t level)
{
    kz_log log = {kzs_jsonlog_sink, NULL, level};
    return log;
}
