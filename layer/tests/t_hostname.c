/* t_hostname: what gethostname() and uname() report, and gethostname() into a 4-byte buffer. */
#include "common.h"

#include <sys/utsname.h>

int main(void)
{
    char name[256];
    struct utsname u;
    if (gethostname(name, sizeof name) < 0) return printf("gethostname=%s\n", errname(errno)), 1;
    if (uname(&u) < 0) return printf("uname=%s\n", errname(errno)), 1;
    printf("gethostname=%s\nnodename=%s\n", name, u.nodename);
    char small[4];
    int r = gethostname(small, sizeof small);
    printf("small=%s\n", r == 0 ? "0" : errname(errno));
    return 0;
}
