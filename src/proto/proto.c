#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common/err.h"
#include "common/text.h"
#include "proto/proto.h"

const struct sc_op_spec sc_proto_ops[] = {
	{ "hello", { { "version", SC_ARG_INT, 1 }, { "client", SC_ARG_STRING, 0 } } },
	{ "list", { { "cas", SC_ARG_STRING, 0 }, { "cached", SC_ARG_BOOL, 0 } } },
	{ "find", { { "ref", SC_ARG_STRING, 1 }, { "cas", SC_ARG_STRING, 0 }, { "cached", SC_ARG_BOOL, 0 } } },
	{ "get-cert", { { "ref", SC_ARG_STRING, 1 }, { "chain", SC_ARG_BOOL, 0 } } },
	{ "login", { { "token", SC_ARG_STRING, 1 }, { "pin", SC_ARG_STRING, 0 },
	    { "confirm_final_try", SC_ARG_BOOL, 0 }, { "lifetime", SC_ARG_INT, 0 } } },
	{ "logout", { { "token", SC_ARG_STRING, 1 } } },
	{ "logout-all", { { "reason", SC_ARG_STRING, 1 } } },	/* a worker's, from its agent */
	{ "sign", { { "ref", SC_ARG_STRING, 1 }, { "alg", SC_ARG_STRING, 1 },
	    { "data", SC_ARG_B64, 0 }, { "digest", SC_ARG_B64, 0 }, { "pin", SC_ARG_STRING, 0 },
	    { "confirm_final_try", SC_ARG_BOOL, 0 } } },
	{ "status", { { NULL, 0, 0 } } },
	{ "watch", { { NULL, 0, 0 } } },
	{ "refresh", { { NULL, 0, 0 } } },
	{ "init-token", { { "label", SC_ARG_STRING, 1 }, { "so_pin", SC_ARG_STRING, 1 },
	    { "pin", SC_ARG_STRING, 1 } } },
	{ "delete-token", { { "label", SC_ARG_STRING, 1 } } },
	{ "vsc-list", { { NULL, 0, 0 } } },
	{ "keygen", { { "token", SC_ARG_STRING, 1 }, { "type", SC_ARG_STRING, 1 },
	    { "label", SC_ARG_STRING, 0 }, { "key_id", SC_ARG_STRING, 0 } } },
	{ "import", { { "token", SC_ARG_STRING, 1 }, { "cert", SC_ARG_B64, 1 },
	    { "chain", SC_ARG_B64, 0 } } },
	{ "get-public-key", { { "ref", SC_ARG_STRING, 1 } } },
	{ "sign-key", { { "ref", SC_ARG_STRING, 1 }, { "alg", SC_ARG_STRING, 1 },
	    { "data", SC_ARG_B64, 0 }, { "digest", SC_ARG_B64, 0 }, { "pin", SC_ARG_STRING, 0 },
	    { "confirm_final_try", SC_ARG_BOOL, 0 } } },
	{ "mechanisms", { { "token", SC_ARG_STRING, 1 } } },
	{ "pin-change", { { "token", SC_ARG_STRING, 1 }, { "pin", SC_ARG_STRING, 1 },
	    { "new_pin", SC_ARG_STRING, 1 }, { "confirm_final_try", SC_ARG_BOOL, 0 } } },
	{ "pin-unblock", { { "token", SC_ARG_STRING, 1 }, { "so_pin", SC_ARG_STRING, 1 },
	    { "new_pin", SC_ARG_STRING, 1 }, { "confirm_final_try", SC_ARG_BOOL, 0 } } },
	{ "stop", { { NULL, 0, 0 } } },
	{ NULL, { { NULL, 0, 0 } } }
};

void
sc_linebuf_init(struct sc_linebuf *lb, size_t max)
{
	memset(lb, 0, sizeof(*lb));
	lb->max = max;
}

void
sc_linebuf_free(struct sc_linebuf *lb)
{
	if (lb->buf != NULL)
		explicit_bzero(lb->buf, lb->cap);
	free(lb->buf);
	memset(lb, 0, sizeof(*lb));
}

long
sc_linebuf_read(struct sc_linebuf *lb, int fd)
{
	ssize_t n;
	char *nb;

	if (lb->len >= lb->max)
		return SC_ERR_TOO_LARGE;
	if (lb->cap - lb->len < 4096 && lb->cap < lb->max) {
		size_t ncap = lb->cap ? lb->cap * 2 : 8192;
		if (ncap > lb->max)
			ncap = lb->max;
		/* Not realloc(): the old block may hold a PIN and must be wiped. */
		if ((nb = malloc(ncap)) == NULL)
			return SC_ERR_NOMEM;
		if (lb->buf != NULL) {
			memcpy(nb, lb->buf, lb->len);
			explicit_bzero(lb->buf, lb->cap);
			free(lb->buf);
		}
		lb->buf = nb;
		lb->cap = ncap;
	}
	n = read(fd, lb->buf + lb->len, lb->cap - lb->len);
	if (n < 0)
		return SC_ERR_IO;
	lb->len += (size_t)n;
	if (n > 0 && lb->len >= lb->max && memchr(lb->buf + lb->scan, '\n', lb->len - lb->scan) == NULL)
		return SC_ERR_TOO_LARGE;
	return (long)n;
}

int
sc_linebuf_take(struct sc_linebuf *lb, char **line, size_t *len)
{
	char *nl, *s;
	size_t n;

	*line = NULL;
	*len = 0;
	if (lb->len == 0)
		return 0;
	if ((nl = memchr(lb->buf + lb->scan, '\n', lb->len - lb->scan)) == NULL) {
		lb->scan = lb->len;
		return 0;
	}
	n = (size_t)(nl - lb->buf);
	if ((s = malloc(n + 1)) == NULL)
		return SC_ERR_NOMEM;
	memcpy(s, lb->buf, n);
	s[n] = '\0';
	memmove(lb->buf, nl + 1, lb->len - n - 1);
	explicit_bzero(lb->buf + lb->len - n - 1, n + 1);	/* the taken line's old bytes */
	lb->len -= n + 1;
	lb->scan = 0;
	if (n > 0 && s[n - 1] == '\r')
		s[--n] = '\0';
	if (memchr(s, '\0', n) != NULL) {
		free(s);
		return SC_ERR_PROTOCOL;
	}
	*line = s;
	*len = n;
	return 1;
}

static int
arg_ok(json_object *v, enum sc_arg_kind kind)
{
	switch (kind) {
	case SC_ARG_STRING:
	case SC_ARG_B64:
		return json_object_is_type(v, json_type_string);
	case SC_ARG_INT:
		return json_object_is_type(v, json_type_int);
	case SC_ARG_BOOL:
		return json_object_is_type(v, json_type_boolean);
	}
	return 0;
}

static const char *kind_names[] = { "a string", "an integer", "true or false", "base64 text" };

/* Arguments no longer taken, and what to send instead. */
static const struct {
	const char *op, *name, *instead;
} retired_args[] = {
	{ "list", "cafile", "the agent opens no file a client names: read the CA file and send "
	    "its certificates as \"cas\" (PEM text)" },
	{ "find", "cafile", "the agent opens no file a client names: read the CA file and send "
	    "its certificates as \"cas\" (PEM text)" },
};

size_t
sc_utf8_check(const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0, n;
	unsigned lo, hi;

	while (i < len) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		/* RFC 3629's table: the first byte says how many follow, the second's range. */
		lo = 0x80, hi = 0xbf;
		if (s[i] >= 0xc2 && s[i] <= 0xdf)
			n = 1;
		else if (s[i] >= 0xe0 && s[i] <= 0xef) {
			n = 2;
			if (s[i] == 0xe0)
				lo = 0xa0;	/* overlong */
			else if (s[i] == 0xed)
				hi = 0x9f;	/* UTF-16 surrogates */
		} else if (s[i] >= 0xf0 && s[i] <= 0xf4) {
			n = 3;
			if (s[i] == 0xf0)
				lo = 0x90;	/* overlong */
			else if (s[i] == 0xf4)
				hi = 0x8f;	/* over U+10FFFF */
		} else
			return i;	/* a continuation byte, C0/C1 (overlong), F5-FF */
		if (len - i <= n || s[i + 1] < lo || s[i + 1] > hi)
			return i;
		for (size_t k = 2; k <= n; k++)
			if (s[i + k] < 0x80 || s[i + k] > 0xbf)
				return i;
		i += n + 1;
	}
	return len;
}

/* Whether an integer's digits (an optional '-', no leading zeros: JSON's) fit an int64. */
static int
int64_fits(const char *p, size_t n)
{
	const char *max = "9223372036854775807";

	if (n > 0 && *p == '-') {
		p++, n--;
		max = "9223372036854775808";
	}
	return n < 19 || (n == 19 && memcmp(p, max, 19) <= 0);
}

/*
 * Over a request json-c read: how many object members its text holds (each
 * is one ':' outside strings), in *members; SC_ERR_INVALID when an integer in
 * it does not fit an int64 (json-c clamps those without a word). Takes any
 * bytes, and reads none past len.
 */
static int
scan_text(const char *s, size_t len, size_t *members)
{
	size_t i, j;
	int in_str = 0, integer;

	*members = 0;
	for (i = 0; i < len; i++) {
		if (in_str) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				in_str = 0;
		} else if (s[i] == '"')
			in_str = 1;
		else if (s[i] == ':')
			(*members)++;
		else if (s[i] == '-' || (s[i] >= '0' && s[i] <= '9')) {
			integer = 1;
			for (j = i; j < len && (s[j] == '-' || s[j] == '+' || s[j] == '.' ||
			    s[j] == 'e' || s[j] == 'E' || (s[j] >= '0' && s[j] <= '9')); j++)
				if (s[j] == '.' || s[j] == 'e' || s[j] == 'E')
					integer = 0;
			if (integer && !int64_fits(s + i, j - i))
				return SC_ERR_INVALID;
			i = j - 1;
		}
	}
	return SC_OK;
}

/* Members of every object in o and below. json-c keeps one of keys given twice. */
static size_t
tree_members(json_object *o)
{
	size_t n = 0;

	if (json_object_is_type(o, json_type_object)) {
		json_object_object_foreach(o, key, val) {
			(void)key;
			n += 1 + tree_members(val);
		}
	} else if (json_object_is_type(o, json_type_array))
		for (size_t i = 0; i < json_object_array_length(o); i++)
			n += tree_members(json_object_array_get_idx(o, i));
	return n;
}

/* The request arguments that carry a PIN. */
static const char *const pin_names[] = { "pin", "so_pin", "new_pin", NULL };

static int
is_pin_name(const char *k)
{
	for (const char *const *n = pin_names; k != NULL && *n != NULL; n++)
		if (strcmp(k, *n) == 0)
			return 1;
	return 0;
}

/* Overwrite o's PIN strings (pin_names), or o itself when it is the value of one. */
static void
wipe_pins(json_object *o, int is_pin_value)
{
	json_object *v;

	if (o == NULL)
		return;
	if (json_object_is_type(o, json_type_string) && is_pin_value)
		explicit_bzero((char *)json_object_get_string(o), (size_t)json_object_get_string_len(o));
	if (!json_object_is_type(o, json_type_object))
		return;
	for (const char *const *k = pin_names; *k; k++)
		if (json_object_object_get_ex(o, *k, &v) && json_object_is_type(v, json_type_string))
			explicit_bzero((char *)json_object_get_string(v), (size_t)json_object_get_string_len(v));
}

void
sc_proto_wipe_pins(json_object *req)
{
	wipe_pins(req, 0);
}

/* A request that may carry a PIN: every name in pin_names ends in pin". */
static int
names_pin(const char *line, size_t len)
{
	return memmem(line, len, "pin\"", 4) != NULL;
}

/*
 * json-c gathers every string in its tokener's buffer before copying it into
 * the object, and frees that buffer without wiping it; a buffer that grows is
 * moved by realloc(), which frees the old one unwiped too. For a request that
 * may carry a PIN the buffer is first made as large as the line (it then never
 * grows: no string in the line is longer), and after the parse a filler
 * string as long as the line is parsed through the same tokener, which
 * overwrites whatever that buffer held.
 */
static void
tokener_presize(json_tokener *tok, size_t len)
{
	/* Extends the empty buffer (one realloc() of nothing secret), then empties it. */
	if (printbuf_memset(tok->pb, 0, 0, (int)len + 8) == 0)
		printbuf_reset(tok->pb);
}

static void
tokener_scrub(json_tokener *tok, const char *line, size_t len)
{
	char *filler;

	if (!names_pin(line, len))
		return;
	/*
	 * A parse that stopped part-way leaves its objects on the tokener's
	 * stack, freed unwiped by the reset below. json-c 0.16 has no accessor
	 * for them: its (deprecated) public fields are read, for PINs only.
	 */
	for (int d = 0; d <= tok->depth && d < tok->max_depth; d++) {
		int named = d > 0 && is_pin_name(tok->stack[d - 1].obj_field_name);
		wipe_pins(tok->stack[d].obj, named);
		wipe_pins(tok->stack[d].current, named);
	}
	if ((filler = malloc(len + 3)) == NULL)
		return;
	filler[0] = '"';
	memset(filler + 1, 'x', len);
	filler[len + 1] = '"';
	filler[len + 2] = '\0';
	json_tokener_reset(tok);
	json_object_put(json_tokener_parse_ex(tok, filler, (int)len + 2));
	free(filler);
}

/*
 * Parse one JSON value spanning all of text[0..len) through a tokener of the
 * given depth and flags, leaving no copy of a PIN in the memory json-c frees
 * (see tokener_scrub). SC_ERR_PROTOCOL when the text is not exactly one value.
 */
static int
parse_wiping(const char *text, size_t len, int depth, int flags, json_object **out)
{
	json_tokener *tok;
	json_object *o;

	*out = NULL;
	if ((tok = json_tokener_new_ex(depth)) == NULL)
		return SC_ERR_NOMEM;
	json_tokener_set_flags(tok, flags);
	if (names_pin(text, len))
		tokener_presize(tok, len);
	o = json_tokener_parse_ex(tok, text, (int)len);
	if (o != NULL && (json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len)) {
		wipe_pins(o, 0);
		json_object_put(o);
		o = NULL;
	}
	tokener_scrub(tok, text, len);
	json_tokener_free(tok);
	*out = o;
	return o != NULL ? SC_OK : SC_ERR_PROTOCOL;
}

int
sc_proto_parse_request(const char *line, size_t len, json_object **req, int64_t *id,
    const struct sc_op_spec **op, char *whybuf, size_t whylen)
{
	json_object *o = NULL, *v;
	const struct sc_op_spec *spec = NULL;
	const char *opname;
	size_t members;
	int r, dup = 0;

	*req = NULL;
	*id = -1;
	*op = NULL;
	snprintf(whybuf, whylen, "malformed request");
	/* json-c takes overlong forms, surrogates and code points over U+10FFFF. */
	if ((members = sc_utf8_check(line, len)) != len) {
		snprintf(whybuf, whylen, "the request is not valid UTF-8 (byte %zu): send UTF-8 text", members);
		return SC_ERR_INVALID;
	}
	/* Strict JSON in UTF-8 only: no single quotes, NaN, comments or bad bytes. */
	if ((r = parse_wiping(line, len, 16, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8, &o)) != SC_OK) {
		if (r == SC_ERR_PROTOCOL)
			snprintf(whybuf, whylen, "not one JSON object per line");
		return r;
	}
	r = SC_ERR_PROTOCOL;
	if (!json_object_is_type(o, json_type_object)) {
		snprintf(whybuf, whylen, "a request is a JSON object");
		goto out;
	}
	/* json-c clamps integers and keeps the last of a key given twice, silently. */
	if (scan_text(line, len, &members) != SC_OK) {
		snprintf(whybuf, whylen, "a number in the request is out of range: integers fit 64 bits");
		r = SC_ERR_INVALID;
		goto out;
	}
	if (members != tree_members(o)) {
		snprintf(whybuf, whylen, "a key appears twice in one object: give each once");
		r = SC_ERR_INVALID;
		dup = 1;
	}
	if (json_object_object_get_ex(o, "id", &v) && json_object_is_type(v, json_type_int) &&
	    json_object_get_int64(v) >= 0)
		*id = json_object_get_int64(v);
	else if (!dup) {
		snprintf(whybuf, whylen, "\"id\" must be a non-negative integer");
		goto out;
	}
	if (dup)
		goto out;	/* with the id json-c kept, for the client to match the answer */
	if (!json_object_object_get_ex(o, "op", &v) || !json_object_is_type(v, json_type_string)) {
		snprintf(whybuf, whylen, "\"op\" must be a string");
		goto out;
	}
	opname = json_object_get_string(v);
	for (const struct sc_op_spec *s = sc_proto_ops; s->name != NULL; s++)
		if (strcmp(s->name, opname) == 0)
			spec = s;
	if (spec == NULL) {
		snprintf(whybuf, whylen, "unknown op \"%.64s\"", opname);
		r = SC_ERR_UNSUPPORTED;
		goto out;
	}
	json_object_object_foreach(o, key, val) {
		const struct sc_arg_spec *a = NULL;
		if (strcmp(key, "id") == 0 || strcmp(key, "op") == 0)
			continue;
		for (int i = 0; i < SC_OP_MAX_ARGS && spec->args[i].name; i++)
			if (strcmp(spec->args[i].name, key) == 0)
				a = &spec->args[i];
		for (size_t i = 0; a == NULL && i < sizeof(retired_args) / sizeof(retired_args[0]); i++)
			if (strcmp(retired_args[i].op, spec->name) == 0 && strcmp(retired_args[i].name, key) == 0) {
				snprintf(whybuf, whylen, "op \"%s\" no longer takes \"%s\": %s", spec->name,
				    key, retired_args[i].instead);
				r = SC_ERR_INVALID;
				goto out;
			}
		if (a == NULL) {
			snprintf(whybuf, whylen, "op \"%s\" takes no argument \"%.64s\"", spec->name, key);
			r = SC_ERR_INVALID;
			goto out;
		}
		if (!arg_ok(val, a->kind)) {
			snprintf(whybuf, whylen, "\"%s\" must be %s", a->name, kind_names[a->kind]);
			r = SC_ERR_INVALID;
			goto out;
		}
	}
	for (int i = 0; i < SC_OP_MAX_ARGS && spec->args[i].name; i++)
		if (spec->args[i].required && !json_object_object_get_ex(o, spec->args[i].name, NULL)) {
			snprintf(whybuf, whylen, "op \"%s\" needs \"%s\"", spec->name, spec->args[i].name);
			r = SC_ERR_INVALID;
			goto out;
		}
	*req = o;
	o = NULL;
	*op = spec;
	r = SC_OK;
out:
	/* A refused request is freed here: its PINs are wiped first (the caller wipes an accepted one's). */
	wipe_pins(o, 0);
	json_object_put(o);
	return r;
}

json_object *
sc_proto_parse_text(const char *text)
{
	json_object *o;

	parse_wiping(text, strlen(text), JSON_TOKENER_DEFAULT_DEPTH, 0, &o);
	return o;
}

const char *
sc_json_text(json_object *o)
{
	return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

/*
 * json-c prints into a buffer of the object that grows by realloc(), which
 * frees the smaller copies unwiped. A first print with every PIN replaced by
 * a filler at least as long as the PIN could print (6 bytes a character,
 * \u00XX) grows that buffer to full size; the second, with the PINs, then
 * fits in it without moving.
 */
const char *
sc_proto_text(json_object *req)
{
	json_object *real[sizeof(pin_names) / sizeof(pin_names[0])] = { NULL }, *v;
	char *filler;
	size_t n;
	int any = 0;

	for (int i = 0; pin_names[i] != NULL; i++) {
		if (!json_object_object_get_ex(req, pin_names[i], &v) || !json_object_is_type(v, json_type_string))
			continue;
		n = (size_t)json_object_get_string_len(v) * 6 + 1;
		if ((filler = malloc(n + 1)) == NULL)
			continue;
		memset(filler, 'x', n);
		filler[n] = '\0';
		real[i] = json_object_get(v);
		json_object_object_add(req, pin_names[i], json_object_new_string_len(filler, (int)n));
		free(filler);
		any = 1;
	}
	if (any) {
		sc_json_text(req);
		for (int i = 0; pin_names[i] != NULL; i++)
			if (real[i] != NULL)
				json_object_object_add(req, pin_names[i], real[i]);
	}
	return sc_json_text(req);
}

static char *
line_of(json_object *o, size_t *len)
{
	const char *s = sc_json_text(o);
	size_t n = strlen(s);
	char *out = malloc(n + 2);

	if (out != NULL) {
		memcpy(out, s, n);
		out[n] = '\n';
		out[n + 1] = '\0';
		*len = n + 1;
	}
	json_object_put(o);
	return out;
}

char *
sc_proto_ok(int64_t id, json_object *result, size_t *len)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "id", json_object_new_int64(id));
	json_object_object_add(o, "ok", json_object_new_boolean(1));
	json_object_object_add(o, "result", result ? result : json_object_new_object());
	return line_of(o, len);
}

char *
sc_proto_error(int64_t id, int code, const char *msg, size_t *len)
{
	json_object *o = json_object_new_object(), *e = json_object_new_object();

	json_object_object_add(o, "id", id >= 0 ? json_object_new_int64(id) : NULL);
	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(e, "code", json_object_new_string(sc_errname(code)));
	json_object_object_add(e, "message", sc_json_new_text(msg ? msg : sc_strerror(code)));
	json_object_object_add(o, "error", e);
	return line_of(o, len);
}

char *
sc_proto_event(const char *name, json_object *fields, size_t *len)
{
	json_object *o = fields ? fields : json_object_new_object();

	json_object_object_add(o, "event", json_object_new_string(name));
	return line_of(o, len);
}
