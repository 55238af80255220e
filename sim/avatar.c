/* placeholder: implemented next */
#include <kizuna/avatar.h>
