/*
 * Fuzz target for the audit log reader and verifier, which parse files an
 * attacker may have edited. Invariants: nothing is read outside the input,
 * the first bad record lies within it, a decoded record's size fits the
 * bytes it came from and re-decodes from an exact-size copy, and a log
 * that verifies decodes record by record to its end with the counts the
 * verifier reported.
 */
#include <stdlib.h>
#include <string.h>

#include <kizuna/audit.h>

/* The public key of the seed corpus (tests/fuzz/corpus/audit/README). */
static const uint8_t kz_fuzz_audit_pk[KZ_SIGN_PUBLIC_KEY_BYTES] = {
#include "corpus/audit/pubkey.inc"
};

static void check_decode(const uint8_t *data, size_t size)
{
    kz_audit_entry e;
    if (kz_audit_decode(data, size, &e) != KZ_OK)
        return;
    if (e.size > size || e.size < 88 || e.size > KZ_AUDIT_RECORD_MAX)
        abort();
    uint8_t *exact = malloc(e.size);
    memcpy(exact, data, e.size);
    kz_audit_entry again;
    if (kz_audit_decode(exact, e.size, &again) != KZ_OK || again.seq != e.seq ||
        memcmp(again.hash, e.hash, sizeof e.hash) != 0)
        abort();
    free(exact);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_decode(data, size);
    for (uint32_t flags = 0; flags <= KZ_AUDIT_VERIFY_ALLOW_OPEN; flags++) {
        kz_audit_verify_result r;
        int rc = kz_audit_verify_buffer(data, size, kz_fuzz_audit_pk, flags, &r);
        if ((rc == KZ_OK) != (r.verdict == KZ_AUDIT_VALID) || r.why == NULL)
            abort();
        if (rc != KZ_OK) {
            if (r.bad_offset > size || r.bad_index != r.records)
                abort();
            continue;
        }
        uint64_t n = 0, ckpts = 0;
        for (size_t at = 0; at < size; n++) {
            kz_audit_entry e;
            if (kz_audit_decode(data + at, size - at, &e) != KZ_OK || e.seq != n)
                abort();
            ckpts += e.rec.type == KZ_AUDIT_CHECKPOINT;
            at += e.size;
        }
        if (n != r.records || ckpts != r.checkpoints || n == 0)
            abort();
    }
    return 0;
}
