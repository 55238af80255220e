/*
 * A program built against an installed Kizuna, as an integrator would:
 * proves the headers, the library and the package files work from outside
 * the source tree.
 */
#include <stdio.h>
#include <string.h>

#include <kizuna/common.h>
#include <kizuna/ring.h>

int main(void)
{
    kz_spsc r;
    if (kz_spsc_init(&r, 4, sizeof(int), NULL) != KZ_OK)
        return 1;
    int in = 42, out = 0;
    int ok = kz_spsc_push(&r, &in) == KZ_OK && kz_spsc_pop(&r, &out) == KZ_OK && out == 42;
    kz_spsc_fini(&r);
    if (!ok || strcmp(kz_version(), "") == 0)
        return 1;
    printf("consumer: kizuna %s works\n", kz_version());
    return 0;
}
