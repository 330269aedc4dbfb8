/*
 * The fuzz targets (tests/fuzz/fuzz-*.c): each defines libFuzzer's entry
 * point and its name, which names its seed corpus tests/fuzz/corpus/NAME.
 * tests/fuzz/driver.c runs that corpus under `make check`; libFuzzer's own
 * main replaces the driver for real fuzzing (tests/fuzz/README.md).
 */
#ifndef SC_FUZZ_H
#define SC_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "proto/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
extern const char sc_fuzz_name[];

/*
 * data as the byte stream a client sends, read from a file descriptor and
 * framed into lines exactly as the agent frames a socket (sc_linebuf, lines
 * up to cap bytes): fn gets each line (NUL-terminated, freed after) but empty
 * ones and those with a NUL byte, which the agent answers without parsing.
 * It stops where the agent drops the client (a line over cap).
 */
static inline void
fuzz_lines(const uint8_t *data, size_t size, size_t cap, void (*fn)(char *line, size_t len))
{
	struct sc_linebuf lb;
	char *line;
	size_t len;
	int fd, r;

	if ((fd = memfd_create("fuzz", MFD_CLOEXEC)) < 0)
		return;
	if (size > 0 && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return;
	}
	lseek(fd, 0, SEEK_SET);
	sc_linebuf_init(&lb, cap);
	while (sc_linebuf_read(&lb, fd) > 0) {
		if (lb.len > cap || lb.cap > cap)
			abort();
		while ((r = sc_linebuf_take(&lb, &line, &len)) != 0) {
			if (r < 0)
				continue;
			if (strlen(line) != len)
				abort();
			if (len > 0)
				fn(line, len);
			free(line);
		}
	}
	sc_linebuf_free(&lb);
	close(fd);
}

#endif
