/* Small helpers: hex, base64, digests, bounded strings, time. */
#ifndef SC_UTIL_H
#define SC_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Lowercase hex of len bytes; caller frees; NULL on allocation failure. */
char *sc_hex(const unsigned char *p, size_t len);
/* Decode hex (upper or lower case, even length); 0 on success, SC_ERR_INVALID otherwise. */
int sc_unhex(const char *s, unsigned char **out, size_t *outlen);
/* Standard base64 without line breaks; caller frees. */
char *sc_b64(const unsigned char *p, size_t len);
/* Decode standard base64 (no whitespace); 0 on success, SC_ERR_INVALID otherwise. */
int sc_unb64(const char *s, unsigned char **out, size_t *outlen);
/* A copy of a blank-padded PKCS#11 string field with trailing blanks removed. */
char *sc_p11_str(const unsigned char *field, size_t len);
/* 1 if every character of s is a hex digit. */
int sc_is_hex(const char *s);
/* strdup that returns NULL for NULL. */
char *sc_strdup0(const char *s);
/* Monotonic time in milliseconds. */
uint64_t sc_now_ms(void);
/* ms from now on clock clk, as pthread_cond_timedwait wants it (the condition's clock). */
struct timespec sc_deadline(clockid_t clk, long ms);

#endif
