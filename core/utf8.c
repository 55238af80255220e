/*
 * Strict UTF-8 validation, one code point at a time, and the rule for
 * display names. Inputs are short (names, chat lines), so clarity wins
 * over a vectorized scan.
 */
#include <kizuna/utf8.h>

/* Decodes one code point at s[0..n); returns its length (1..4) and stores
 * it in *cp, or 0 when the bytes are not well-formed UTF-8. */
static size_t kz__utf8_next(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint8_t b = s[0];
    size_t len;
    uint32_t min, c;
    if (b < 0x80) {
        *cp = b;
        return 1;
    } else if ((b & 0xe0) == 0xc0) {
        len = 2, min = 0x80, c = b & 0x1f;
    } else if ((b & 0xf0) == 0xe0) {
        len = 3, min = 0x800, c = b & 0x0f;
    } else if ((b & 0xf8) == 0xf0) {
        len = 4, min = 0x10000, c = b & 0x07;
    } else {
        return 0; /* continuation byte or 0xf8..0xff as a lead */
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    /* Overlong, surrogate, or beyond the Unicode range. */
    if (c < min || (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
        return 0;
    *cp = c;
    return len;
}

int kz_utf8_valid(const uint8_t *s, size_t n)
{
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        size_t len = kz__utf8_next(s + i, n - i, &cp);
        if (len == 0)
            return 0;
        i += len;
    }
    return 1;
}

/* C0, DEL and C1 controls. */
static int kz__utf8_is_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
}

int kz_utf8_printable(const uint8_t *s, size_t n)
{
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        size_t len = kz__utf8_next(s + i, n - i, &cp);
        if (len == 0 || kz__utf8_is_control(cp))
            return 0;
        i += len;
    }
    return 1;
}

/* ---- display names ------------------------------------------------------ */

typedef struct kz__cp_range {
    uint32_t lo, hi;
} kz__cp_range;

static int kz__in_ranges(uint32_t cp, const kz__cp_range *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (cp >= r[i].lo && cp <= r[i].hi)
            return 1;
    return 0;
}

#define KZ__N(a) (sizeof(a) / sizeof((a)[0]))

/* Characters that show nothing, or change how the text around them is
 * laid out, so that two different names can look the same: zero-width
 * characters and joiners, direction marks, embeddings, overrides and
 * isolates, fillers that render blank, variation selectors, tags,
 * interlinear annotation and other format controls. */
static const kz__cp_range kz__invisible[] = {
    {0x00ad, 0x00ad},   /* soft hyphen */
    {0x034f, 0x034f},   /* combining grapheme joiner */
    {0x061c, 0x061c},   /* Arabic letter mark */
    {0x115f, 0x1160},   /* Hangul choseong and jungseong fillers */
    {0x17b4, 0x17b5},   /* Khmer inherent vowels */
    {0x180b, 0x180f},   /* Mongolian variation selectors and vowel separator */
    {0x200b, 0x200f},   /* zero-width space, non-joiner, joiner; LRM, RLM */
    {0x202a, 0x202e},   /* bidi embeddings and overrides */
    {0x2060, 0x206f},   /* word joiner, invisible operators, bidi isolates */
    {0x2800, 0x2800},   /* braille pattern blank */
    {0x3164, 0x3164},   /* Hangul filler */
    {0xfe00, 0xfe0f},   /* variation selectors */
    {0xfeff, 0xfeff},   /* zero-width no-break space (byte order mark) */
    {0xffa0, 0xffa0},   /* halfwidth Hangul filler */
    {0xfff0, 0xfffb},   /* unassigned specials, interlinear annotation */
    {0x1bca0, 0x1bca3}, /* shorthand format controls */
    {0x1d173, 0x1d17a}, /* musical symbol format controls */
    {0xe0000, 0xe0fff}, /* tags, variation selectors supplement */
};

/* Space characters other than U+0020: they look like it. */
static const kz__cp_range kz__other_spaces[] = {
    {0x00a0, 0x00a0}, {0x1680, 0x1680}, {0x2000, 0x200a},
    {0x202f, 0x202f}, {0x205f, 0x205f}, {0x3000, 0x3000},
};

/* Characters with no agreed glyph: private use and noncharacters. */
static const kz__cp_range kz__no_glyph[] = {
    {0xe000, 0xf8ff}, {0xfdd0, 0xfdef}, {0xf0000, 0x10ffff},
};

/* Combining marks of the generic diacritic blocks: a name may not start
 * with one (it would attach to whatever is shown before the name). */
static const kz__cp_range kz__combining[] = {
    {0x0300, 0x036f}, {0x1ab0, 0x1aff}, {0x1dc0, 0x1dff},
    {0x20d0, 0x20ff}, {0xfe20, 0xfe2f},
};

/* Why one code point (at position `first` or not) may not be in a name. */
static const char *kz__name_cp_problem(uint32_t cp, int first)
{
    if (kz__utf8_is_control(cp) || cp == 0x2028 || cp == 0x2029)
        return "a control character or a line break";
    if (kz__in_ranges(cp, kz__invisible, KZ__N(kz__invisible)))
        return "an invisible or text-direction character";
    if (kz__in_ranges(cp, kz__other_spaces, KZ__N(kz__other_spaces)))
        return "a space other than U+0020";
    if (kz__in_ranges(cp, kz__no_glyph, KZ__N(kz__no_glyph)) || (cp & 0xfffe) == 0xfffe)
        return "a private-use character or a noncharacter";
    if (first && kz__in_ranges(cp, kz__combining, KZ__N(kz__combining)))
        return "a combining mark at the start";
    return NULL;
}

const char *kz_utf8_name_problem(const uint8_t *s, size_t n, uint32_t *cp_out)
{
    uint32_t cp = 0, prev = 0;
    const char *why = NULL;
    if (cp_out)
        *cp_out = KZ_UTF8_NO_CODE_POINT;
    if (n == 0)
        return "empty";
    for (size_t i = 0; i < n && !why;) {
        size_t len = kz__utf8_next(s + i, n - i, &cp);
        if (len == 0)
            return "not well-formed UTF-8";
        why = kz__name_cp_problem(cp, i == 0);
        if (!why && cp == ' ' && (i == 0 || i + len == n))
            why = "a space at the start or the end";
        if (!why && cp == ' ' && prev == ' ')
            why = "two spaces in a row";
        prev = cp;
        i += len;
    }
    if (why && cp_out)
        *cp_out = cp;
    return why;
}
