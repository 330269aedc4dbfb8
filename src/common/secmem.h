/* Buffers for secrets (PINs): locked in memory when possible, wiped on free. */
#ifndef SC_SECMEM_H
#define SC_SECMEM_H
#include <stddef.h>

/* A NUL-terminated copy of s in locked memory; NULL on allocation failure. */
char *sc_secstr_dup(const char *s);
/* Zeroed secret buffer of n bytes (mlock attempted, failure tolerated and logged once). */
void *sc_secmem_alloc(size_t n);
/* Wipe and free; NULL is fine. */
void sc_secmem_free(void *p);
void sc_secstr_free(char *s);
/* Constant-time comparison of two buffers of equal length; 0 when equal. */
int sc_secmem_cmp(const void *a, const void *b, size_t n);

#endif
