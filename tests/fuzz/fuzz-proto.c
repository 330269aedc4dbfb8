/*
 * Fuzz target for the agent's request path: the line framing (sc_linebuf_*,
 * fed from a file descriptor exactly as the agent reads a socket) and
 * sc_proto_parse_request on every line, plus the response builders on what
 * parsed. libFuzzer entry point LLVMFuzzerTestOneInput.
 *
 * `make check` builds it with a small driver main that runs the seed corpus
 * tests/fuzz/corpus/proto (every file; or the files and directories given as
 * arguments) once each, so the target always compiles and the seeds stay
 * clean under ASan. For real fuzzing, build without the driver:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -DSC_FUZZ_NO_MAIN \
 *     -I. -Iinclude -Isrc tests/fuzz/fuzz-proto.c src/proto/proto.c \
 *     src/common/err.c $(pkg-config --cflags --libs json-c p11-kit-1 libcrypto) \
 *     -o fuzz-proto
 *   ./fuzz-proto -max_len=300000 tests/fuzz/corpus/proto
 */
#include "config.h"
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/err.h"
#include "proto/proto.h"

/* Small cap so that inputs of a few KiB reach the too-large path too. */
#define FUZZ_LINE_MAX 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sc_linebuf lb;
	char *line;
	size_t len;
	long n;
	int fd, r;

	/* The whole input as one request line (the parser takes any bytes). */
	one_request((const char *)data, size);

	/* The input as a byte stream from a file descriptor, framed into lines. */
	if ((fd = memfd_create("fuzz-proto", MFD_CLOEXEC)) < 0)
		return 0;
	if (size > 0 && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	lseek(fd, 0, SEEK_SET);
	sc_linebuf_init(&lb, FUZZ_LINE_MAX);
	for (;;) {
		n = sc_linebuf_read(&lb, fd);
		if (n <= 0)
			break;	/* end of input, or over the cap: the agent drops the client */
		if (lb.len > FUZZ_LINE_MAX || lb.cap > FUZZ_LINE_MAX)
			abort();
		while ((r = sc_linebuf_take(&lb, &line, &len)) != 0) {
			if (r < 0)
				continue;	/* a NUL byte: error reply, line skipped */
			if (strlen(line) != len)
				abort();
			one_request(line, len);
			free(line);
		}
	}
	sc_linebuf_free(&lb);
	close(fd);
	return 0;
}

#ifndef SC_FUZZ_NO_MAIN
/* Driver: run every file given (directories: every file in them) once. */
static int
run_file(const char *path)
{
	FILE *fp = fopen(path, "rb");
	unsigned char *buf = NULL;
	long sz;

	if (fp == NULL || fseek(fp, 0, SEEK_END) != 0 || (sz = ftell(fp)) < 0 ||
	    fseek(fp, 0, SEEK_SET) != 0 || (buf = malloc((size_t)sz + 1)) == NULL ||
	    fread(buf, 1, (size_t)sz, fp) != (size_t)sz) {
		fprintf(stderr, "fuzz-proto: cannot read %s\n", path);
		if (fp)
			fclose(fp);
		free(buf);
		return -1;
	}
	fclose(fp);
	LLVMFuzzerTestOneInput(buf, (size_t)sz);
	free(buf);
	return 0;
}

static int
run_path(const char *path, int *count)
{
	struct stat sb;
	struct dirent **ents;
	char sub[4096];
	int n, bad = 0;

	if (stat(path, &sb) < 0) {
		fprintf(stderr, "fuzz-proto: %s: no such file or directory\n", path);
		return -1;
	}
	if (!S_ISDIR(sb.st_mode)) {
		if (run_file(path) < 0)
			return -1;
		printf("ok %d - %s\n", ++*count, path);
		return 0;
	}
	if ((n = scandir(path, &ents, NULL, alphasort)) < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		if (ents[i]->d_name[0] != '.') {
			snprintf(sub, sizeof(sub), "%s/%s", path, ents[i]->d_name);
			if (run_path(sub, count) < 0)
				bad = 1;
		}
		free(ents[i]);
	}
	free(ents);
	return bad ? -1 : 0;
}

int
main(int argc, char **argv)
{
	const char *top = getenv("TOP_SRCDIR");
	char def[4096];
	int count = 0, bad = 0;

	if (argc > 1) {
		for (int i = 1; i < argc; i++)
			if (run_path(argv[i], &count) < 0)
				bad = 1;
	} else {
		snprintf(def, sizeof(def), "%s/tests/fuzz/corpus/proto", top ? top : ".");
		if (run_path(def, &count) < 0)
			bad = 1;
	}
	printf("1..%d\n", count);
	if (count == 0) {
		fprintf(stderr, "fuzz-proto: no seed files run\n");
		return 1;
	}
	return bad;
}
#endif
