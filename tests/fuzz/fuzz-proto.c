/*
 * Fuzz target for the agent's request path: the line framing (sc_linebuf_*,
 * fed from a file descriptor exactly as the agent reads a socket) and
 * sc_proto_parse_request on every line, plus the response builders on what
 * parsed. libFuzzer entry point LLVMFuzzerTestOneInput.
 *
 * `make check` builds it with tests/fuzz/driver.c, which runs the seed
 * corpus tests/fuzz/corpus/proto once; for real fuzzing see
 * tests/fuzz/README.md.
 */
#include "config.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "common/err.h"
#include "proto/proto.h"
#include "fuzz.h"

const char sc_fuzz_name[] = "proto";

/* Small cap so that inputs of a few KiB reach the too-large path too. */
#define FUZZ_LINE_MAX 4096

/*
 * Another count of the keys than the parser's: every '"' outside strings
 * that starts a string followed by ':' (JSON's whitespace between) is a key.
 */
static size_t
keys_in(const char *s, size_t len)
{
	size_t n = 0, i, j;

	for (i = 0; i < len; i++) {
		if (s[i] != '"')
			continue;
		for (j = i + 1; j < len && s[j] != '"'; j++)
			if (s[j] == '\\')
				j++;
		for (i = j + 1; i < len && strchr(" \t\r\n", s[i]) != NULL; i++)
			;
		if (i < len && s[i] == ':')
			n++;
		else
			i--;
	}
	return n;
}

/* json-c prints each key it kept once. */
static int
keys_all_kept(const char *line, size_t len, json_object *req)
{
	const char *text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);

	return keys_in(line, len) == keys_in(text, strlen(text));
}

static void
one_request(const char *line, size_t len)
{
	json_object *req = NULL;
	const struct sc_op_spec *op = NULL;
	char why[256], *out;
	int64_t id = -1;
	size_t olen = 0;
	int r;

	r = sc_proto_parse_request(line, len, &req, &id, &op, why, sizeof(why));
	if (r == SC_OK) {
		/* Only valid UTF-8 is taken, and json-c kept every key (none was given twice). */
		if (req == NULL || op == NULL || id < 0 || sc_utf8_check(line, len) != len ||
		    !keys_all_kept(line, len, req))
			abort();
		/* what the agent does with an accepted request: answer it */
		out = sc_proto_ok(id, json_object_get(req), &olen);
		if (out == NULL || olen == 0 || out[olen - 1] != '\n')
			abort();
		free(out);
		json_object_put(req);
	} else {
		if (req != NULL || r >= 0 || memchr(why, '\0', sizeof(why)) == NULL)
			abort();
		out = sc_proto_error(id, r, why, &olen);
		if (out == NULL || olen == 0 || out[olen - 1] != '\n')
			abort();
		free(out);
	}
}

static void
one_line(char *line, size_t len)
{
	one_request(line, len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The whole input as one request line (the parser takes any bytes). */
	one_request((const char *)data, size);
	/* The input as a byte stream from a file descriptor, framed into lines. */
	fuzz_lines(data, size, FUZZ_LINE_MAX, one_line);
	return 0;
}
