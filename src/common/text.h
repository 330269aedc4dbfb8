/*
 * Untrusted text: what tokens, certificates, readers and servers say, on its
 * way into JSON (always valid UTF-8) and onto a terminal (never a control
 * character). The rules are docs/INTERFACE.md's "Untrusted text".
 */
#ifndef SC_TEXT_H
#define SC_TEXT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <json-c/json.h>

/*
 * Length (1 to 4) of the well-formed UTF-8 sequence (RFC 3629: shortest form,
 * no surrogates, nothing above U+10FFFF) at p[0..len), with its code point in
 * *cp; 0 when p does not start one (or len is 0).
 */
size_t sc_utf8_seq(const unsigned char *p, size_t len, uint32_t *cp);
/* 1 when all of p[0..len) is well-formed UTF-8 (empty is), else 0. */
int sc_utf8_valid(const void *p, size_t len);

/* JSON: obj[key] = val, taking val even on failure; 0 or SC_ERR_NOMEM (val NULL too). */
int sc_json_set(json_object *obj, const char *key, json_object *val);
/*
 * JSON: a string value of s (NULL is "") in which every byte that is not
 * part of well-formed UTF-8 became U+FFFD. NULL when out of memory.
 */
json_object *sc_json_new_text(const char *s);
/*
 * JSON: obj[key] = sc_json_new_text(s); when s was not valid UTF-8, also
 * obj[key + "_hex"] = s's bytes in lowercase hex. 0 or SC_ERR_NOMEM.
 */
int sc_json_add_text(json_object *obj, const char *key, const char *s);

/*
 * Whether the terminal's character set is UTF-8, as the locale environment
 * says (the first set of LC_ALL, LC_CTYPE, LANG names UTF-8 or utf8).
 */
int sc_term_utf8(void);
/*
 * p[0..len) for a terminal: printable ASCII as it is; newline, carriage
 * return and tab as \n, \r, \t; other control characters (C0, DEL) and
 * bytes that are not UTF-8 as \xNN; other valid UTF-8 as it is when utf8 is
 * set, except C1 controls, line/paragraph separators and bidirectional
 * formatting characters, which are written \xNN byte by byte, as is
 * everything non-ASCII when utf8 is 0. Caller frees; NULL when out of memory.
 */
char *sc_term_escape(const char *p, size_t len, int utf8);
/*
 * One line on fp with a single fprintf (lines of threads do not mix): prefix
 * as it is, then fmt's text escaped with sc_term_escape (it may quote labels,
 * names and what servers and proxies said), then a newline.
 */
void sc_term_vsay(FILE *fp, const char *prefix, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/*
 * Every string in the tree o made safe for a terminal with sc_term_escape,
 * in place. A string member K with a sibling K_hex (sc_json_add_text) is
 * replaced by its raw bytes escaped, so "\xff" shows where JSON has U+FFFD.
 * 0 or SC_ERR_NOMEM.
 */
int sc_json_term_escape(json_object *o, int utf8);

#endif
