/*
 * pin-scan: an LD_PRELOAD library for tests. When the process ends it looks
 * for a PIN in all of its writable memory but the stack (heap, stdio and
 * json-c buffers, freed blocks, library data) and writes what it found to a
 * file. A program that wipes every copy of the PIN it made leaves none.
 *
 *   SCAN_PIN_HEX  the PIN, hex-encoded (so that the environment, on the
 *                 stack, never holds it in clear)
 *   SCAN_OUT      the report: "hits N" and one line per mapping with a hit;
 *                 a "%p" in it stands for the process id
 *
 * The decoded PIN lives in a page of its own, left out of the scan and
 * wiped afterwards.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

__attribute__((destructor)) static void
pin_scan(void)
{
	const char *hex = getenv("SCAN_PIN_HEX"), *out = getenv("SCAN_OUT");
	size_t pl, page = (size_t)sysconf(_SC_PAGESIZE);
	char line[512], path[4096], *pin, *pp;
	unsigned long lo, hi;
	int hits = 0;
	FILE *maps, *rep;

	if (hex == NULL || out == NULL || (pl = strlen(hex) / 2) == 0 || pl >= page)
		return;
	pin = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (pin == MAP_FAILED)
		return;
	for (size_t i = 0; i < pl; i++) {
		unsigned int byte = 0;
		sscanf(hex + 2 * i, "%2x", &byte);
		pin[i] = (char)byte;
	}
	if ((pp = strstr(out, "%p")) != NULL)
		snprintf(path, sizeof(path), "%.*s%ld%s", (int)(pp - out), out, (long)getpid(), pp + 2);
	else
		snprintf(path, sizeof(path), "%s", out);
	if ((rep = fopen(path, "w")) == NULL || (maps = fopen("/proc/self/maps", "r")) == NULL) {
		if (rep != NULL)
			fclose(rep);
		munmap(pin, page);
		return;
	}
	while (fgets(line, sizeof(line), maps) != NULL) {
		char perms[8] = "", name[256] = "";
		if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %255[^\n]", &lo, &hi, perms, name) < 3)
			continue;
		if (perms[0] != 'r' || perms[1] != 'w' || lo == (unsigned long)pin ||
		    strstr(name, "[stack") != NULL || strstr(name, "[v") != NULL)
			continue;
		for (const char *p = (const char *)lo, *end = (const char *)hi; p < end;) {
			const char *f = memmem(p, (size_t)(end - p), pin, pl);
			if (f == NULL)
				break;
			hits++;
			fprintf(rep, "at %#lx in %#lx-%#lx %s\n", (unsigned long)f, lo, hi,
			    name[0] ? name : "(anonymous)");
			p = f + 1;
		}
	}
	fclose(maps);
	fprintf(rep, "hits %d\n", hits);
	fclose(rep);
	explicit_bzero(pin, page);
	munmap(pin, page);
}
