/* Project error codes: negative ints, one table, one function that names them. */
#ifndef SC_ERR_H
#define SC_ERR_H

#include <p11-kit/pkcs11.h>

enum {
	SC_OK = 0,
	SC_ERR_INTERNAL = -1,		/* a bug or an impossible state */
	SC_ERR_NOMEM = -2,
	SC_ERR_INVALID = -3,		/* bad argument or bad request */
	SC_ERR_IO = -4,			/* system call failed, errno kept */
	SC_ERR_TOO_LARGE = -5,		/* message or input over its cap */
	SC_ERR_PROTOCOL = -6,		/* malformed message */
	SC_ERR_UNSUPPORTED = -7,	/* operation or version unknown */
	SC_ERR_NOT_FOUND = -8,		/* REF or token matches nothing */
	SC_ERR_AMBIGUOUS = -9,		/* REF matches more than one */
	SC_ERR_MODULE = -10,		/* module failed to load or initialise */
	SC_ERR_PIN_INCORRECT = -11,
	SC_ERR_PIN_LOCKED = -12,
	SC_ERR_PIN_INVALID = -13,	/* PIN has a bad length or characters */
	SC_ERR_PIN_FINAL_TRY = -14,	/* login refused: final try needs confirmation */
	SC_ERR_NOT_LOGGED_IN = -15,
	SC_ERR_TOKEN_REMOVED = -16,
	SC_ERR_DEVICE = -17,		/* token or reader failed */
	SC_ERR_MECHANISM = -18,		/* token cannot do this algorithm */
	SC_ERR_KEY = -19,		/* key unusable for this operation */
	SC_ERR_BAD_SIGNATURE = -20,	/* token produced a signature that does not verify */
	SC_ERR_AGENT_UNREACHABLE = -21,
	SC_ERR_DENIED = -22,		/* refused by policy or confirmation */
	SC_ERR_CANCELLED = -23,
	SC_ERR_TIMEOUT = -24,
	SC_ERR_TLS = -25,
	SC_ERR_CERT = -26,		/* certificate unparseable or unsuitable */
	SC_ERR_BUSY = -27,
	SC_ERR_ALREADY = -28,		/* already logged in / exists */
	SC_ERR_PIN_REQUIRED = -29,	/* the key needs its PIN for this signature */
	SC_ERR_MAX_ = -30
};

/* Human message for a code ("PIN incorrect"). Never NULL. */
const char *sc_strerror(int r);
/* Stable protocol name for a code ("pin-incorrect"). Never NULL. */
const char *sc_errname(int r);
/* Inverse of sc_errname(); SC_ERR_INTERNAL for an unknown name. */
int sc_errcode(const char *name);
/* The one place where a CK_RV becomes a project error. */
int sc_err_from_ckr(CK_RV rv);
/*
 * How many module calls have failed with CKR_DEVICE_ERROR or
 * CKR_GENERAL_ERROR in this process (counted by sc_err_from_ckr): a module
 * worker that sees it grow has its module initialised again.
 */
unsigned long sc_ckr_fatal_count(void);
/*
 * sc_err_from_ckr for a call on a token the module had recognised (open a
 * session, log in, sign): there CKR_TOKEN_NOT_RECOGNIZED counts as fatal
 * too. (A slot read answers it for every card the module does not know, as
 * OpenSC does: that is no failure of the module.)
 */
int sc_err_from_ckr_known(CK_RV rv);
/* The CK_RV constant's name ("CKR_PIN_INCORRECT"), or "CKR_0x..." (static buffer per thread). */
const char *sc_ckr_name(CK_RV rv);

#endif
