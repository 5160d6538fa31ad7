/* t_ctor: linked with libctor.so (see ctor_lib.c), whose constructor runs first. */
#include "common.h"

int ctor_lib_marker(void);

int main(void)
{
    printf("main marker=%d\n", ctor_lib_marker());
    return 0;
}
