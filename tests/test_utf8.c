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

/* ---- display names ------------------------------------------------------- */

static const char *name_problem(const char *s, uint32_t *cp)
{
    return kz_utf8_name_problem((const uint8_t *)s, strlen(s), cp);
}

Test(utf8_name, accepts_names_people_use)
{
    static const char *const good[] = {
        "Aiko",
        "Aiko \xe7\xb5\x86",                 /* Latin and CJK with one space */
        "Jos\xc3\xa9 Mar\xc3\xad" "a",      /* precomposed accents */
        "e\xcc\x81t\xc3\xa9",                /* a combining accent after a letter */
        "\xd0\x98\xd0\xb2\xd0\xb0\xd0\xbd",  /* Cyrillic */
        "\xd8\xb3\xd9\x84\xd9\x85\xd9\x89",  /* Arabic letters (no direction controls) */
        "\xf0\x9f\x98\x80 smile",            /* an emoji */
        "a.b-c_d'e",
        "x",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint32_t cp = 0;
        cr_assert_null(name_problem(good[i], &cp), "'%s' refused: %s", good[i],
                       name_problem(good[i], NULL));
        cr_assert_eq(cp, KZ_UTF8_NO_CODE_POINT);
    }
}

/* Each character class the rule names, between two letters, and the code
 * point the refusal reports. */
Test(utf8_name, refuses_invisible_direction_and_control_characters)
{
    static const struct {
        const char *s;
        uint32_t cp;
    } bad[] = {
        {"a\xe2\x80\x8b" "b", 0x200b},      /* zero-width space */
        {"a\xe2\x80\x8c" "b", 0x200c},      /* zero-width non-joiner */
        {"a\xe2\x80\x8d" "b", 0x200d},      /* zero-width joiner */
        {"a\xe2\x80\x8e" "b", 0x200e},      /* left-to-right mark */
        {"a\xe2\x80\x8f" "b", 0x200f},      /* right-to-left mark */
        {"a\xe2\x80\xaa" "b", 0x202a},      /* LRE */
        {"a\xe2\x80\xae" "b", 0x202e},      /* right-to-left override */
        {"a\xe2\x81\xa0" "b", 0x2060},      /* word joiner */
        {"a\xe2\x81\xa6" "b", 0x2066},      /* LRI */
        {"a\xe2\x81\xa9" "b", 0x2069},      /* PDI */
        {"a\xef\xbb\xbf" "b", 0xfeff},      /* zero-width no-break space */
        {"a\xc2\xad" "b", 0x00ad},          /* soft hyphen */
        {"a\xd8\x9c" "b", 0x061c},          /* Arabic letter mark */
        {"a\xe3\x85\xa4" "b", 0x3164},      /* Hangul filler */
        {"a\xe2\xa0\x80" "b", 0x2800},      /* braille blank */
        {"a\xef\xb8\x8f" "b", 0xfe0f},      /* variation selector 16 */
        {"a\xf3\xa0\x80\x81" "b", 0xe0001}, /* language tag */
        {"a\xe2\x80\xa8" "b", 0x2028},      /* line separator */
        {"a\xe2\x80\xa9" "b", 0x2029},      /* paragraph separator */
        {"a\x7f" "b", 0x7f},
        {"a\x1b" "b", 0x1b},
        {"a\xc2\x85" "b", 0x85},            /* C1 next line */
        {"a\xc2\xa0" "b", 0xa0},            /* no-break space */
        {"a\xe3\x80\x80" "b", 0x3000},      /* ideographic space */
        {"a\xe2\x80\x80" "b", 0x2000},      /* en quad */
        {"a\xee\x80\x80" "b", 0xe000},      /* private use */
        {"a\xef\xb7\x90" "b", 0xfdd0},      /* noncharacter */
        {"a\xef\xbf\xbe" "b", 0xfffe},      /* noncharacter */
        {"a\xf0\x9f\xbf\xbf" "b", 0x1ffff}, /* noncharacter in plane 1 */
        {"\xcc\x81" "a", 0x0301},           /* starts with a combining mark */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint32_t cp = 0;
        cr_assert_not_null(name_problem(bad[i].s, &cp), "case %zu accepted", i);
        cr_assert_eq(cp, bad[i].cp, "case %zu: reported U+%04X", i, cp);
    }
}

Test(utf8_name, spaces_single_and_inside)
{
    cr_assert_null(name_problem("Ren Aoki", NULL));
    cr_assert_not_null(name_problem(" Ren", NULL));
    cr_assert_not_null(name_problem("Ren ", NULL));
    cr_assert_not_null(name_problem("Ren  Aoki", NULL));
    cr_assert_not_null(name_problem(" ", NULL));
    uint32_t cp = 0;
    cr_assert_not_null(name_problem("", &cp));
    cr_assert_eq(cp, KZ_UTF8_NO_CODE_POINT);
    cr_assert_not_null(name_problem("\xc3\x28", &cp), "ill-formed");
    cr_assert_eq(cp, KZ_UTF8_NO_CODE_POINT);
    cr_assert_not_null(kz_utf8_name_problem((const uint8_t *)"a\0b", 3, NULL), "NUL");
}

/* Over every code point: a name of that one character between two
 * letters is refused exactly when the rule's ranges say so (a reference
 * written from the header's list, independent of the implementation). */
static int listed_refused(uint32_t cp)
{
    static const uint32_t r[][2] = {
        {0x00, 0x1f}, {0x7f, 0x9f}, {0x2028, 0x2029}, {0xad, 0xad}, {0x34f, 0x34f},
        {0x61c, 0x61c}, {0x115f, 0x1160}, {0x17b4, 0x17b5}, {0x180b, 0x180f},
        {0x200b, 0x200f}, {0x202a, 0x202e}, {0x2060, 0x206f}, {0x2800, 0x2800},
        {0x3164, 0x3164}, {0xfe00, 0xfe0f}, {0xfeff, 0xfeff}, {0xffa0, 0xffa0},
        {0xfff0, 0xfffb}, {0x1bca0, 0x1bca3}, {0x1d173, 0x1d17a}, {0xe0000, 0xe0fff},
        {0xa0, 0xa0}, {0x1680, 0x1680}, {0x2000, 0x200a}, {0x202f, 0x202f},
        {0x205f, 0x205f}, {0x3000, 0x3000}, {0xe000, 0xf8ff}, {0xfdd0, 0xfdef},
        {0xf0000, 0x10ffff},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (cp >= r[i][0] && cp <= r[i][1])
            return 1;
    return (cp & 0xfffe) == 0xfffe;
}

Test(utf8_name, every_code_point_between_letters)
{
    uint8_t buf[6];
    for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
        if (cp >= 0xd800 && cp <= 0xdfff)
            continue;
        buf[0] = 'a';
        size_t n = 1 + encode(cp, buf + 1);
        buf[n++] = 'b';
        int refused = kz_utf8_name_problem(buf, n, NULL) != NULL;
        cr_assert_eq(refused, listed_refused(cp), "U+%04X", cp);
    }
}
