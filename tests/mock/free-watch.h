/*
 * free() and realloc() replaced for a whole process (every library's calls
 * come here: the symbols are exported), so that a test sees each block before
 * it goes back to glibc: the including file defines
 *
 *   static void freed_block(const void *p, size_t usable_size);
 *
 * realloc() is malloc, copy and free, so the old block of a growing buffer
 * is seen too (glibc's realloc frees it inside, unseen). Not for builds with
 * AddressSanitizer or runs under valgrind, which bring their own allocators.
 */
#ifndef SC_TEST_FREE_WATCH_H
#define SC_TEST_FREE_WATCH_H

#include <malloc.h>
#include <stddef.h>
#include <string.h>

extern void __libc_free(void *);
static void freed_block(const void *p, size_t n);

__attribute__((visibility("default"))) void
free(void *p)
{
	if (p != NULL)
		freed_block(p, malloc_usable_size(p));
	__libc_free(p);
}

__attribute__((visibility("default"))) void *
realloc(void *p, size_t n)
{
	size_t old = p != NULL ? malloc_usable_size(p) : 0;
	void *q;

	if (n == 0) {
		free(p);
		return NULL;
	}
	if ((q = malloc(n)) == NULL)
		return NULL;
	if (p != NULL) {
		memcpy(q, p, old < n ? old : n);
		free(p);
	}
	return q;
}

#endif
