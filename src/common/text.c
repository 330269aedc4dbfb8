/*
 * Untrusted text into JSON and onto terminals; see text.h.
 *
 * Why: labels, token fields, reader names and certificate names are written
 * by whoever made the token or the certificate. Printed raw, an escape
 * sequence in a UPN clears or rewrites the user's terminal and a newline in a
 * label forges a line of output; put raw into JSON, bytes that are not UTF-8
 * make the document invalid (RFC 8259 section 8.1) and strict parsers fail.
 * OpenSSH (stravis) and GnuPG escape such text the same way.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/text.h"
#include "common/util.h"

size_t
sc_utf8_seq(const unsigned char *p, size_t len, uint32_t *cp)
{
	unsigned char c;
	uint32_t v;
	size_t n;

	*cp = 0;
	if (p == NULL || len == 0)
		return 0;
	c = p[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		n = 1;
		v = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 2;
		v = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 3;
		v = c & 0x07;
	} else
		return 0;
	if (len - 1 < n)
		return 0;
	for (size_t k = 1; k <= n; k++) {
		if ((p[k] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (p[k] & 0x3f);
	}
	if ((n == 2 && v < 0x800) || (n == 3 && v < 0x10000) ||
	    v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n + 1;
}

int
sc_utf8_valid(const void *p, size_t len)
{
	const unsigned char *s = p;
	uint32_t cp;
	size_t i = 0, n;

	while (i < len) {
		if ((n = sc_utf8_seq(s + i, len - i, &cp)) == 0)
			return 0;
		i += n;
	}
	return 1;
}

/* Room for len bytes grown to at most grow each, and a NUL; NULL on failure. */
static char *
grown(size_t len, size_t grow)
{
	if (len > (SIZE_MAX - 1) / grow)
		return NULL;
	return malloc(len * grow + 1);
}

/* A copy of s with each byte outside well-formed UTF-8 replaced by U+FFFD. */
static char *
utf8_repair(const char *s, size_t len)
{
	static const char fffd[] = "\xef\xbf\xbd";
	const unsigned char *p = (const unsigned char *)s;
	char *d = grown(len, 3);
	size_t i = 0, o = 0, n;
	uint32_t cp;

	if (d == NULL)
		return NULL;
	while (i < len) {
		if ((n = sc_utf8_seq(p + i, len - i, &cp)) == 0) {
			memcpy(d + o, fffd, 3);
			o += 3;
			i++;
			continue;
		}
		memcpy(d + o, p + i, n);
		o += n;
		i += n;
	}
	d[o] = '\0';
	return d;
}

json_object *
sc_json_new_text(const char *s)
{
	json_object *j;
	size_t len;
	char *fixed;

	if (s == NULL)
		s = "";
	len = strlen(s);
	if (sc_utf8_valid(s, len))
		return json_object_new_string(s);
	if ((fixed = utf8_repair(s, len)) == NULL)
		return NULL;
	j = json_object_new_string(fixed);
	free(fixed);
	return j;
}

int
sc_json_set(json_object *obj, const char *key, json_object *val)
{
	if (val == NULL)
		return SC_ERR_NOMEM;
	if (json_object_object_add(obj, key, val) != 0) {
		json_object_put(val);
		return SC_ERR_NOMEM;
	}
	return 0;
}

int
sc_json_add_text(json_object *obj, const char *key, const char *s)
{
	char *hexkey = NULL, *hex = NULL;
	size_t klen;
	int r = SC_ERR_INTERNAL;

	if (s == NULL)
		s = "";
	if ((r = sc_json_set(obj, key, sc_json_new_text(s))) != 0)
		goto out;
	if (sc_utf8_valid(s, strlen(s))) {
		r = 0;
		goto out;
	}
	klen = strlen(key) + sizeof("_hex");
	if ((hexkey = malloc(klen)) == NULL ||
	    (hex = sc_hex((const unsigned char *)s, strlen(s))) == NULL) {
		r = SC_ERR_NOMEM;
		goto out;
	}
	snprintf(hexkey, klen, "%s_hex", key);
	r = sc_json_set(obj, hexkey, json_object_new_string(hex));
 out:
	free(hexkey);
	free(hex);
	return r;
}

int
sc_term_utf8(void)
{
	static const char *const vars[] = { "LC_ALL", "LC_CTYPE", "LANG" };
	const char *v = NULL;

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		if ((v = getenv(vars[i])) != NULL && *v != '\0')
			break;
	if (v == NULL || *v == '\0')
		return 0;
	return strstr(v, "UTF-8") != NULL || strstr(v, "utf-8") != NULL ||
	    strstr(v, "UTF8") != NULL || strstr(v, "utf8") != NULL;
}

/*
 * Characters that are valid UTF-8 but still steer a terminal or the order
 * text is shown in: C1 controls, line and paragraph separators, and the
 * bidirectional marks, embeddings, overrides and isolates.
 */
static int
steers(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || cp == 0x061c || cp == 0x200e ||
	    cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e) ||
	    (cp >= 0x2066 && cp <= 0x2069);
}

char *
sc_term_escape(const char *s, size_t len, int utf8)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	char *d = grown(len, 4);	/* "\xNN" */
	size_t i = 0, o = 0, n;
	uint32_t cp;

	if (d == NULL)
		return NULL;
	while (i < len) {
		unsigned char c = p[i];

		n = sc_utf8_seq(p + i, len - i, &cp);
		if (c >= 0x20 && c < 0x7f) {
			d[o++] = (char)c;
			i++;
		} else if (c == '\n' || c == '\r' || c == '\t') {
			d[o++] = '\\';
			d[o++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
			i++;
		} else if (n > 1 && utf8 && !steers(cp)) {
			memcpy(d + o, p + i, n);
			o += n;
			i += n;
		} else {
			/* A control, a byte that is no UTF-8, or what we do not print. */
			for (size_t k = 0; k < (n > 1 ? n : 1); k++) {
				d[o++] = '\\';
				d[o++] = 'x';
				d[o++] = digits[p[i + k] >> 4];
				d[o++] = digits[p[i + k] & 0xf];
			}
			i += n > 1 ? n : 1;
		}
	}
	d[o] = '\0';
	return d;
}

void
sc_term_vsay(FILE *fp, const char *prefix, const char *fmt, va_list ap)
{
	char *msg = NULL, *e = NULL;
	int n;

	if ((n = vasprintf(&msg, fmt, ap)) < 0)
		msg = NULL;
	else
		e = sc_term_escape(msg, (size_t)n, sc_term_utf8());
	fprintf(fp, "%s%s\n", prefix != NULL ? prefix : "", e != NULL ? e : "(out of memory)");
	free(e);
	free(msg);
}

/* One string value escaped in place; raw (len bytes) is what it stands for. */
static int
escape_value(json_object *v, const char *raw, size_t len, int utf8)
{
	char *e;
	int r;

	if ((e = sc_term_escape(raw, len, utf8)) == NULL)
		return SC_ERR_NOMEM;
	r = json_object_set_string(v, e) == 1 ? 0 : SC_ERR_NOMEM;
	free(e);
	return r;
}

/* The raw bytes a member stands for: its K_hex sibling decoded, if any. */
static int
member_raw(json_object *obj, const char *key, unsigned char **raw, size_t *len)
{
	json_object *h;
	char *hexkey;
	size_t klen = strlen(key) + sizeof("_hex");
	int found, r;

	*raw = NULL;
	*len = 0;
	if ((hexkey = malloc(klen)) == NULL)
		return SC_ERR_NOMEM;
	snprintf(hexkey, klen, "%s_hex", key);
	found = json_object_object_get_ex(obj, hexkey, &h) &&
	    json_object_is_type(h, json_type_string);
	free(hexkey);
	if (!found)
		return 0;
	/* A sibling that is not hex: escape the value itself. */
	r = sc_unhex(json_object_get_string(h), raw, len);
	return r == SC_ERR_NOMEM ? r : 0;
}

int
sc_json_term_escape(json_object *o, int utf8)
{
	int r = 0;

	switch (json_object_get_type(o)) {
	case json_type_string:
		return escape_value(o, json_object_get_string(o),
		    (size_t)json_object_get_string_len(o), utf8);
	case json_type_array:
		for (size_t i = 0; r == 0 && i < json_object_array_length(o); i++)
			r = sc_json_term_escape(json_object_array_get_idx(o, i), utf8);
		return r;
	case json_type_object: {
		/* braces: json-c's foreach begins with a declaration, which clang takes after no label */
		json_object_object_foreach(o, key, val) {
			unsigned char *raw = NULL;
			size_t len = 0;

			if (!json_object_is_type(val, json_type_string)) {
				if ((r = sc_json_term_escape(val, utf8)) != 0)
					return r;
				continue;
			}
			if ((r = member_raw(o, key, &raw, &len)) != 0)
				return r;
			if (raw != NULL)
				r = escape_value(val, (const char *)raw, len, utf8);
			else
				r = sc_json_term_escape(val, utf8);
			free(raw);
			if (r != 0)
				return r;
		}
		return 0;
	}
	default:
		return 0;
	}
}
