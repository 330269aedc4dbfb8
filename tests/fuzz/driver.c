/*
 * The fuzz targets' driver for `make check`: run every file given (a
 * directory: every file in it), or the target's seed corpus
 * $TOP_SRCDIR/tests/fuzz/corpus/NAME, through LLVMFuzzerTestOneInput once
 * each, with a TAP line per file. So every target always compiles, and its
 * seeds stay clean under ASan and valgrind.
 */
#include "config.h"
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "fuzz.h"

static int
run_file(const char *path)
{
	FILE *fp = fopen(path, "rb");
	unsigned char *buf = NULL;
	long sz;

	if (fp == NULL || fseek(fp, 0, SEEK_END) != 0 || (sz = ftell(fp)) < 0 ||
	    fseek(fp, 0, SEEK_SET) != 0 || (buf = malloc((size_t)sz + 1)) == NULL ||
	    fread(buf, 1, (size_t)sz, fp) != (size_t)sz) {
		fprintf(stderr, "fuzz-%s: cannot read %s\n", sc_fuzz_name, path);
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
		fprintf(stderr, "fuzz-%s: %s: no such file or directory\n", sc_fuzz_name, path);
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
		snprintf(def, sizeof(def), "%s/tests/fuzz/corpus/%s", top ? top : ".", sc_fuzz_name);
		if (run_path(def, &count) < 0)
			bad = 1;
	}
	printf("1..%d\n", count);
	if (count == 0) {
		fprintf(stderr, "fuzz-%s: no seed files run\n", sc_fuzz_name);
		return 1;
	}
	return bad;
}
