/* Asking the user through a pinentry program (GnuPG's Assuan pinentry protocol). */
#ifndef SC_PINENTRY_H
#define SC_PINENTRY_H

#include <stddef.h>

/*
 * The pinentry program to run for program, into buf: program itself; for
 * "auto", chosen now: with a display (DISPLAY or WAYLAND_DISPLAY) the first
 * in PATH of pinentry-gnome3, -qt, -gtk-2, -x11, pinentry; else, when
 * $GPG_TTY is a terminal, pinentry-curses, -tty, pinentry. Returns 0 when
 * nobody can be asked (auto without display and terminal, "no", NULL).
 */
int sc_pinentry_resolve(const char *program, char *buf, size_t len);
/*
 * Ask for a PIN; *pin is in locked memory (free with sc_secstr_free).
 * SC_ERR_NOT_LOGGED_IN when nobody can be asked, as without a pinentry.
 * watch: a socket whose peer's close (the request's client went) closes the
 * prompt at once, SC_ERR_CANCELLED; -1 for none.
 */
int sc_pinentry_getpin(const char *program, const char *desc, int watch, char **pin);
/*
 * Ask yes or no; SC_OK for yes, SC_ERR_CANCELLED for no (or watch's peer
 * closed, as for getpin), SC_ERR_DENIED when nobody can be asked.
 */
int sc_pinentry_confirm(const char *program, const char *desc, int watch);

#endif
