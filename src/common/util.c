#include "config.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>
#include "common/err.h"
#include "common/util.h"

char *
sc_hex(const unsigned char *p, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	char *s;

	if ((s = malloc(len * 2 + 1)) == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		s[2 * i] = digits[p[i] >> 4];
		s[2 * i + 1] = digits[p[i] & 0xf];
	}
	s[len * 2] = '\0';
	return s;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int
sc_unhex(const char *s, unsigned char **out, size_t *outlen)
{
	size_t n = strlen(s);
	unsigned char *b;

	*out = NULL;
	*outlen = 0;
	if (n % 2 != 0)
		return SC_ERR_INVALID;
	if ((b = malloc(n / 2 + 1)) == NULL)
		return SC_ERR_NOMEM;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hexval((unsigned char)s[2 * i]);
		int lo = hexval((unsigned char)s[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			free(b);
			return SC_ERR_INVALID;
		}
		b[i] = (unsigned char)(hi << 4 | lo);
	}
	*out = b;
	*outlen = n / 2;
	return SC_OK;
}

int
sc_is_hex(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s; s++)
		if (!isxdigit((unsigned char)*s))
			return 0;
	return 1;
}

char *
sc_b64(const unsigned char *p, size_t len)
{
	char *s;

	if (len > (size_t)1 << 28)
		return NULL;
	if ((s = malloc(4 * ((len + 2) / 3) + 1)) == NULL)
		return NULL;
	EVP_EncodeBlock((unsigned char *)s, p, (int)len);
	return s;
}

int
sc_unb64(const char *s, unsigned char **out, size_t *outlen)
{
	size_t n = strlen(s);
	unsigned char *b;
	int len, pad = 0;

	*out = NULL;
	*outlen = 0;
	if (n % 4 != 0 || n > (size_t)1 << 28)
		return SC_ERR_INVALID;
	if ((b = malloc(n / 4 * 3 + 1)) == NULL)
		return SC_ERR_NOMEM;
	if ((len = EVP_DecodeBlock(b, (const unsigned char *)s, (int)n)) < 0) {
		free(b);
		return SC_ERR_INVALID;
	}
	/* EVP_DecodeBlock counts the padding as data: take it back off. */
	if (n >= 1 && s[n - 1] == '=')
		pad++;
	if (n >= 2 && s[n - 2] == '=')
		pad++;
	*out = b;
	*outlen = (size_t)len - (size_t)pad;
	return SC_OK;
}

char *
sc_p11_str(const unsigned char *field, size_t len)
{
	char *s;

	while (len > 0 && (field[len - 1] == ' ' || field[len - 1] == '\0'))
		len--;
	if ((s = malloc(len + 1)) == NULL)
		return NULL;
	memcpy(s, field, len);
	s[len] = '\0';
	return s;
}

char *
sc_strdup0(const char *s)
{
	return s == NULL ? NULL : strdup(s);
}

uint64_t
sc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct timespec
sc_deadline(clockid_t clk, long ms)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}
