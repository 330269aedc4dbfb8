/*
 * pin-scan: an LD_PRELOAD library for tests. It looks for a PIN in every
 * block the process frees (free() and realloc() are replaced for all of it:
 * a block freed unwiped may be reused and overwritten before the end) and,
 * when the process ends, in all of its writable memory but the stack (heap,
 * stdio and json-c buffers, library data), and writes what it found to a
 * file. A program that wipes every copy of the PIN it made leaves none. Any
 * 8 bytes of the PIN count.
 *
 *   SCAN_PIN_HEX  the PIN, hex-encoded (so that the environment, on the
 *                 stack, never holds it in clear)
 *   SCAN_OUT      the report: one line per copy found, then "freed N" (blocks
 *                 freed holding a piece) and "hits N" (all copies, freed ones
 *                 included); a "%p" in it stands for the process id
 *
 * The decoded PIN lives in a page of its own, left out of the scan and
 * wiped afterwards.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "free-watch.h"

static char *pin;		/* the decoded PIN, in a page of its own */
static size_t pl, piece, page;
static int freed;		/* blocks freed with a piece of the PIN in them */

static int
holds_piece(const char *p, size_t n)
{
	for (size_t k = 0; k + piece <= pl; k++)
		if (memmem(p, n, pin + k, piece) != NULL)
			return 1;
	return 0;
}

__attribute__((constructor)) static void
pin_decode(void)
{
	const char *hex = getenv("SCAN_PIN_HEX");
	char *b;

	page = (size_t)sysconf(_SC_PAGESIZE);
	if (hex == NULL || (pl = strlen(hex) / 2) == 0 || pl >= page)
		return;
	b = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b == MAP_FAILED)
		return;
	for (size_t i = 0; i < pl; i++) {
		unsigned int byte = 0;
		sscanf(hex + 2 * i, "%2x", &byte);
		b[i] = (char)byte;
	}
	piece = pl < 8 ? pl : 8;
	pin = b;
}

static void
freed_block(const void *p, size_t n)
{
	if (pin != NULL && holds_piece(p, n))
		__atomic_fetch_add(&freed, 1, __ATOMIC_RELAXED);
}

/* Occurrences of any piece bytes of the PIN in [lo, hi), each reported. */
static int
scan(FILE *rep, const char *name, unsigned long lo, unsigned long hi)
{
	int hits = 0;

	for (size_t k = 0; k + piece <= pl; k++) {
		for (const char *p = (const char *)lo, *end = (const char *)hi; p < end;) {
			const char *f = memmem(p, (size_t)(end - p), pin + k, piece);
			if (f == NULL)
				break;
			hits++;
			fprintf(rep, "bytes %zu-%zu of the PIN at %#lx in %#lx-%#lx %s\n", k,
			    k + piece - 1, (unsigned long)f, lo, hi, name[0] ? name : "(anonymous)");
			p = f + 1;
		}
	}
	return hits;
}

__attribute__((destructor)) static void
pin_scan(void)
{
	const char *out = getenv("SCAN_OUT");
	char line[512], path[4096], *pp;
	unsigned long lo, hi;
	int hits = 0;
	FILE *maps, *rep;

	if (pin == NULL || out == NULL)
		return;
	if ((pp = strstr(out, "%p")) != NULL)
		snprintf(path, sizeof(path), "%.*s%ld%s", (int)(pp - out), out, (long)getpid(), pp + 2);
	else
		snprintf(path, sizeof(path), "%s", out);
	if ((rep = fopen(path, "w")) == NULL || (maps = fopen("/proc/self/maps", "r")) == NULL) {
		if (rep != NULL)
			fclose(rep);
		return;
	}
	while (fgets(line, sizeof(line), maps) != NULL) {
		char perms[8] = "", name[256] = "";
		if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %255[^\n]", &lo, &hi, perms, name) < 3)
			continue;
		if (perms[0] != 'r' || perms[1] != 'w' ||
		    strstr(name, "[stack") != NULL || strstr(name, "[v") != NULL)
			continue;
		/* The decoded PIN's own page is left out (it may have merged into a mapping). */
		if ((unsigned long)pin >= lo && (unsigned long)pin < hi) {
			hits += scan(rep, name, lo, (unsigned long)pin);
			hits += scan(rep, name, (unsigned long)pin + page, hi);
		} else
			hits += scan(rep, name, lo, hi);
	}
	fclose(maps);
	fprintf(rep, "freed %d\nhits %d\n", freed, hits + freed);
	fclose(rep);
}
