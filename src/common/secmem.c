#include "config.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "common/log.h"
#include "common/secmem.h"

/* Each allocation carries its size in front so that free can wipe and unlock it. */
struct hdr {
	size_t n;
	int locked;
	int pad_;
};

void *
sc_secmem_alloc(size_t n)
{
	static int warned;
	struct hdr *h;

	if (n > SIZE_MAX - sizeof(*h))
		return NULL;
	if ((h = calloc(1, sizeof(*h) + n)) == NULL)
		return NULL;
	h->n = n;
	if (mlock(h, sizeof(*h) + n) == 0)
		h->locked = 1;
	else if (!warned) {
		warned = 1;
		sc_debug("mlock failed: secrets may be swapped out");
	}
	return h + 1;
}

void
sc_secmem_free(void *p)
{
	struct hdr *h;

	if (p == NULL)
		return;
	h = (struct hdr *)p - 1;
	explicit_bzero(p, h->n);
	if (h->locked)
		munlock(h, sizeof(*h) + h->n);
	free(h);
}

char *
sc_secstr_dup(const char *s)
{
	size_t n = strlen(s);
	char *d;

	if ((d = sc_secmem_alloc(n + 1)) == NULL)
		return NULL;
	memcpy(d, s, n + 1);
	return d;
}

void
sc_secstr_free(char *s)
{
	sc_secmem_free(s);
}

int
sc_secmem_cmp(const void *a, const void *b, size_t n)
{
	const volatile unsigned char *x = a, *y = b;
	unsigned char d = 0;

	for (size_t i = 0; i < n; i++)
		d |= x[i] ^ y[i];
	return d != 0;
}
