/* Small helpers: hex, base64, digests, bounded strings, time. */
#ifndef SC_UTIL_H
#define SC_UTIL_H
#include <stddef.h>
#include <stdint.h>

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
/* Monotonic time in milliseconds and microseconds. */
uint64_t sc_now_ms(void);
uint64_t sc_now_us(void);

/*
 * Whether the agent's signatures keep every CPU busy: seen under way at once,
 * in the last SC_CROWDED_US, in numbers above half its CPUs (each signature
 * needs a CPU, and so does the client waiting for it). Work done ahead then
 * takes a CPU from a signature. One client on two CPUs never crowds them. A
 * zeroed struct is not crowded; safe to share between threads.
 */
#define SC_CROWDED_US 100000
struct sc_crowd {
	uint64_t until;			/* sc_now_us(); atomic */
};
/* under_way signatures (this one included) at now_us, on an agent with ncpus CPUs. */
void sc_crowd_note(struct sc_crowd *c, int under_way, int ncpus, uint64_t now_us);
int sc_crowd_is(struct sc_crowd *c, uint64_t now_us);
/* Crowded until until_us at least: the CPUs are busy with other work. */
void sc_crowd_hold(struct sc_crowd *c, uint64_t until_us);

#endif
