/* Asking the user through a pinentry program (GnuPG's Assuan pinentry protocol). */
#ifndef SC_PINENTRY_H
#define SC_PINENTRY_H

/* Ask for a PIN; *pin is in locked memory (free with sc_secstr_free). */
int sc_pinentry_getpin(const char *program, const char *desc, char **pin);
/* Ask yes or no; SC_OK for yes, SC_ERR_CANCELLED for no. */
int sc_pinentry_confirm(const char *program, const char *desc);

#endif
