/* placeholder: implemented next */
#include "sim/snapshot.h"
