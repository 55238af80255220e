/* placeholder: implemented next */
#include "sim/interest.h"
