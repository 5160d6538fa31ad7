/* Every mapping from intproxy answers and layer failures to errno / EAI / h_errno, in one place. */
#ifndef MIRRORD_ERRORS_H
#define MIRRORD_ERRORS_H

#include <stdint.h>

/* What a hook reports when the intproxy cannot be reached or breaks the protocol. */
#define LAYER_CONNECT_UNAVAILABLE_ERRNO ENETUNREACH
#define LAYER_GAI_UNAVAILABLE EAI_AGAIN
#define LAYER_HOST_UNAVAILABLE TRY_AGAIN

/* CONNECT status < 0 -> errno (anything outside the errno range becomes EIO). */
int errors_connect_errno(int32_t status);
/* GETADDRINFO status < 0 -> an EAI_* code getaddrinfo may return (unknown ones: EAI_FAIL). */
int errors_gai(int32_t status);
/* EAI_* -> h_errno for the gethostbyname family. */
int errors_h_errno(int eai);
/* EAI_* -> the return value of gethostbyname_r (0 when the answer is "no such host"). */
int errors_hostent_r(int eai);

#endif
