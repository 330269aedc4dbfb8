/*
 * Untrusted text (src/common/text.c): UTF-8 checks, the JSON rule (U+FFFD
 * and a <name>_hex sibling) and escaping for terminals.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "common/err.h"
#include "common/text.h"

static void
test_utf8_seq(void **state)
{
	static const struct {
		const char *s;
		size_t len, want;
		uint32_t cp;
	} cases[] = {
		{ "A", 1, 1, 0x41 },
		{ "\x1b", 1, 1, 0x1b },
		{ "\xc3\xa9", 2, 2, 0xe9 },
		{ "\xe2\x82\xac", 3, 3, 0x20ac },
		{ "\xf0\x9f\x94\x91", 4, 4, 0x1f511 },
		{ "\xf4\x8f\xbf\xbf", 4, 4, 0x10ffff },
		{ "\xff", 1, 0, 0 },			/* never in UTF-8 */
		{ "\x80", 1, 0, 0 },			/* lone continuation */
		{ "\xc0\x80", 2, 0, 0 },		/* overlong NUL */
		{ "\xe0\x80\xaf", 3, 0, 0 },		/* overlong '/' */
		{ "\xed\xa0\x80", 3, 0, 0 },		/* surrogate */
		{ "\xf4\x90\x80\x80", 4, 0, 0 },	/* above U+10FFFF */
		{ "\xe2\x82", 2, 0, 0 },		/* cut short */
		{ "\xc3(", 2, 0, 0 },			/* bad continuation */
	};
	uint32_t cp;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(sc_utf8_seq((const unsigned char *)cases[i].s,
		    cases[i].len, &cp), cases[i].want);
		assert_int_equal(cp, cases[i].cp);
		assert_int_equal(sc_utf8_valid(cases[i].s, cases[i].len), cases[i].want != 0);
	}
	assert_int_equal(sc_utf8_seq(NULL, 0, &cp), 0);
	assert_true(sc_utf8_valid("", 0));
	assert_true(sc_utf8_valid("j\xc3\xbcrgen", 7));
}

/* The document as a strict parser reads it: valid UTF-8, then parsed back. */
static json_object *
roundtrip(json_object *o)
{
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	struct json_tokener *tok = json_tokener_new();
	json_object *back;

	assert_true(sc_utf8_valid(text, strlen(text)));
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	back = json_tokener_parse_ex(tok, text, (int)strlen(text));
	assert_non_null(back);
	json_tokener_free(tok);
	return back;
}

static const char *
member(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return NULL;
	return json_object_get_string(v);
}

static void
test_json_text(void **state)
{
	json_object *o = json_object_new_object(), *back, *v;

	(void)state;
	assert_int_equal(sc_json_add_text(o, "label", "bad\xff\x1b[2J"), 0);
	assert_int_equal(sc_json_add_text(o, "model", "j\xc3\xbcrgen"), 0);
	assert_int_equal(sc_json_add_text(o, "serial", NULL), 0);
	/* A multi-byte character cut at a fixed-size field's end. */
	assert_int_equal(sc_json_add_text(o, "cut", "ab\xe2\x82"), 0);
	back = roundtrip(o);
	assert_string_equal(member(back, "label"), "bad\xef\xbf\xbd\x1b[2J");
	assert_string_equal(member(back, "label_hex"), "626164ff1b5b324a");
	/* Valid text: as it is, no _hex. */
	assert_string_equal(member(back, "model"), "j\xc3\xbcrgen");
	assert_null(member(back, "model_hex"));
	assert_string_equal(member(back, "serial"), "");
	assert_null(member(back, "serial_hex"));
	/* Each invalid byte is one U+FFFD. */
	assert_string_equal(member(back, "cut"), "ab\xef\xbf\xbd\xef\xbf\xbd");
	assert_string_equal(member(back, "cut_hex"), "6162e282");
	json_object_put(back);
	json_object_put(o);

	v = sc_json_new_text("\xc0\x80x");
	assert_string_equal(json_object_get_string(v), "\xef\xbf\xbd\xef\xbf\xbdx");
	json_object_put(v);
	v = sc_json_new_text(NULL);
	assert_string_equal(json_object_get_string(v), "");
	json_object_put(v);
	o = json_object_new_object();
	assert_int_equal(sc_json_set(o, "k", NULL), SC_ERR_NOMEM);
	assert_int_equal(json_object_object_length(o), 0);
	json_object_put(o);
}

static void
test_term_escape(void **state)
{
	static const struct {
		const char *in;
		size_t len;
		int utf8;
		const char *want;
	} cases[] = {
		{ "alice", 5, 1, "alice" },
		{ "", 0, 1, "" },
		/* The attacks measured in issue 19. */
		{ "\x1b[2J", 4, 1, "\\x1b[2J" },
		{ "evil\n  x  [CBA ok]", 18, 1, "evil\\n  x  [CBA ok]" },
		{ "bad\xff\x1b[2J", 8, 1, "bad\\xff\\x1b[2J" },
		{ "a\rb\tc\x7f\x01", 7, 1, "a\\rb\\tc\\x7f\\x01" },
		{ "a\0b", 3, 1, "a\\x00b" },
		/* Valid non-ASCII as it is on a UTF-8 terminal, else byte by byte. */
		{ "j\xc3\xbcrgen", 7, 1, "j\xc3\xbcrgen" },
		{ "j\xc3\xbcrgen", 7, 0, "j\\xc3\\xbcrgen" },
		{ "\xf0\x9f\x94\x91", 4, 1, "\xf0\x9f\x94\x91" },
		/* Valid UTF-8 that still steers: C1 CSI, RIGHT-TO-LEFT OVERRIDE, LINE SEPARATOR. */
		{ "\xc2\x9b" "2J", 4, 1, "\\xc2\\x9b2J" },
		{ "abc\xe2\x80\xaetxt", 9, 1, "abc\\xe2\\x80\\xaetxt" },
		{ "\xe2\x80\xa8", 3, 1, "\\xe2\\x80\\xa8" },
		{ "\xe2\x81\xa6", 3, 1, "\\xe2\\x81\\xa6" },
		/* Overlong and truncated sequences: every byte escaped. */
		{ "\xc0\x8a", 2, 1, "\\xc0\\x8a" },
		{ "x\xe2\x82", 3, 1, "x\\xe2\\x82" },
		/* Backslashes and RFC 2253 escapes stay as they are. */
		{ "CN=a\\,b", 7, 1, "CN=a\\,b" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *e = sc_term_escape(cases[i].in, cases[i].len, cases[i].utf8);

		assert_non_null(e);
		assert_string_equal(e, cases[i].want);
		free(e);
	}
}

static void
test_json_term_escape(void **state)
{
	json_object *o = json_object_new_object(), *arr = json_object_new_array();
	json_object *inner = json_object_new_object();

	(void)state;
	assert_int_equal(sc_json_add_text(o, "label", "bad\xff\x1b[2J"), 0);
	json_object_object_add(o, "upn", arr);
	json_object_array_add(arr, json_object_new_string("\x1b[2Jalice@contoso.com"));
	json_object_array_add(arr, json_object_new_int(3));
	json_object_object_add(inner, "name", json_object_new_string("line\nforged"));
	/* A _hex that is not hex: the value itself is escaped. */
	json_object_object_add(inner, "model", json_object_new_string("m\x1b"));
	json_object_object_add(inner, "model_hex", json_object_new_string("zz"));
	json_object_object_add(o, "reader", inner);
	json_object_object_add(o, "slot", json_object_new_int(7));

	assert_int_equal(sc_json_term_escape(o, 1), 0);
	/* The raw bytes from label_hex, not the U+FFFD of the JSON value. */
	assert_string_equal(member(o, "label"), "bad\\xff\\x1b[2J");
	assert_string_equal(member(o, "label_hex"), "626164ff1b5b324a");
	assert_string_equal(json_object_get_string(json_object_array_get_idx(arr, 0)),
	    "\\x1b[2Jalice@contoso.com");
	assert_int_equal(json_object_get_int(json_object_array_get_idx(arr, 1)), 3);
	assert_string_equal(member(inner, "name"), "line\\nforged");
	assert_string_equal(member(inner, "model"), "m\\x1b");
	assert_int_equal(json_object_get_int(json_object_object_get(o, "slot")), 7);
	json_object_put(o);
}

static void
test_term_utf8(void **state)
{
	(void)state;
	unsetenv("LC_ALL");
	unsetenv("LC_CTYPE");
	unsetenv("LANG");
	assert_false(sc_term_utf8());
	setenv("LANG", "en_US.UTF-8", 1);
	assert_true(sc_term_utf8());
	setenv("LC_CTYPE", "C", 1);		/* LC_CTYPE before LANG */
	assert_false(sc_term_utf8());
	setenv("LC_ALL", "de_DE.utf8", 1);	/* LC_ALL before both */
	assert_true(sc_term_utf8());
	setenv("LC_ALL", "", 1);		/* empty: not set */
	assert_false(sc_term_utf8());
	setenv("LC_CTYPE", "C.UTF-8", 1);
	assert_true(sc_term_utf8());
	setenv("LC_CTYPE", "POSIX", 1);
	assert_false(sc_term_utf8());
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8_seq),
		cmocka_unit_test(test_json_text),
		cmocka_unit_test(test_term_escape),
		cmocka_unit_test(test_json_term_escape),
		cmocka_unit_test(test_term_utf8),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
