#define _GNU_SOURCE
#include "errors.h"

#include <errno.h>
#include <netdb.h>

int errors_connect_errno(int32_t status)
{
    /* Linux errno values are < 4096; a negative status outside that is a broken intproxy. */
    return status < 0 && status > -4096 ? (int)-status : EIO;
}

int errors_gai(int32_t status)
{
    switch (status) {
    case EAI_NONAME:
    case EAI_AGAIN:
    case EAI_FAIL:
    case EAI_NODATA:
    case EAI_FAMILY:
    case EAI_SERVICE:
    case EAI_MEMORY:
    case EAI_SYSTEM: return (int)status;
    default: return EAI_FAIL;
    }
}

int errors_h_errno(int eai)
{
    switch (eai) {
    case EAI_NONAME:
    case EAI_NODATA: return HOST_NOT_FOUND;
    case EAI_AGAIN: return TRY_AGAIN;
    default: return NO_RECOVERY;
    }
}

int errors_hostent_r(int eai)
{
    /* glibc: "not found" is a successful look-up with no result; only transient trouble is an error. */
    switch (errors_h_errno(eai)) {
    case HOST_NOT_FOUND: return 0;
    case TRY_AGAIN: return EAGAIN;
    default: return ENOENT;
    }
}
