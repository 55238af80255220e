/*
 * UTF-8 validation: the classic well-formed and ill-formed tables, and an
 * exhaustive check of every code point's encoding against a reference
 * encoder.
 */
#include <criterion/criterion.h>
#include <string.h>

#include <kizuna/utf8.h>

#define S(x) (const uint8_t *)(x), sizeof(x) - 1

Test(utf8, accepts_well_formed)
{
    cr_assert(kz_utf8_valid(S("")));
    cr_assert(kz_utf8_valid(S("plain ascii")));
    cr_assert(kz_utf8_valid(S("\xe7\xb5\x86")));              /* U+7D46 kizuna */
    cr_assert(kz_utf8_valid(S("\xf0\x9f\x98\x80")));          /* U+1F600 */
    cr_assert(kz_utf8_valid(S("\xf4\x8f\xbf\xbf")));          /* U+10FFFF */
    cr_assert(kz_utf8_valid(S("\xef\xbf\xbf")));              /* U+FFFF */
    cr_assert(kz_utf8_valid(S("a\0b")), "NUL is valid UTF-8");
}

Test(utf8, rejects_ill_formed)
{
    static const char *const bad[] = {
        "\x80",             /* lone continuation */
        "\xc0\xaf",         /* overlong '/' */
        "\xe0\x80\xaf",     /* overlong, 3 bytes */
        "\xf0\x80\x80\xaf", /* overlong, 4 bytes */
        "\xed\xa0\x80",     /* U+D800 surrogate */
        "\xed\xbf\xbf",     /* U+DFFF surrogate */
        "\xf4\x90\x80\x80", /* U+110000 */
        "\xf8\x88\x80\x80\x80",
        "\xff",
        "\xe7\xb5",         /* truncated */
        "\xc3",             /* truncated at the end */
        "\xc3\x28",         /* bad continuation */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert(!kz_utf8_valid((const uint8_t *)bad[i], strlen(bad[i])), "case %zu", i);
}

Test(utf8, printable_rejects_controls)
{
    cr_assert(kz_utf8_printable(S("Aiko \xe7\xb5\x86")));
    cr_assert(!kz_utf8_printable(S("a\nb")));
    cr_assert(!kz_utf8_printable(S("a\0b")));
    cr_assert(!kz_utf8_printable(S("\x7f")));
    cr_assert(!kz_utf8_printable(S("\xc2\x85")), "C1 NEL");
    cr_assert(!kz_utf8_printable(S("\xc3")));
}

/* Reference encoder for the exhaustive test. */
static size_t encode(uint32_t cp, uint8_t *out)
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xc0 | cp >> 6);
        out[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xe0 | cp >> 12);
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

Test(utf8, every_code_point)
{
    uint8_t buf[4];
    for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
        size_t n = encode(cp, buf);
        int surrogate = cp >= 0xd800 && cp <= 0xdfff;
        cr_assert_eq(kz_utf8_valid(buf, n), !surrogate, "U+%04X", cp);
        if (n > 1)
            cr_assert(!kz_utf8_valid(buf, n - 1), "truncated U+%04X", cp);
    }
}
