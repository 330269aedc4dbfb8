/*
 * What a TPM says about its dictionary-attack protection, read with the TSS2
 * Enhanced System API (TPM2_GetCapability of the TPM properties). A TPM
 * virtual smart card's user PIN is the authorisation value of a TPM object:
 * every wrong PIN moves the TPM-wide lockout counter, and at the maximum the
 * TPM refuses all authorisations until it forgives one failure per interval.
 */
#ifndef SC_TPM_H
#define SC_TPM_H

#include <json-c/json.h>

struct sc_tpm_lockout {
	unsigned long counter;		/* TPM2_PT_LOCKOUT_COUNTER: failures counted now */
	unsigned long max_tries;	/* TPM2_PT_MAX_AUTH_FAIL: failures that lock */
	unsigned long interval;		/* TPM2_PT_LOCKOUT_INTERVAL: s to forgive one failure */
	unsigned long recovery;		/* TPM2_PT_LOCKOUT_RECOVERY: s after a failed lockoutAuth */
	int in_lockout;			/* TPMA_PERMANENT inLockout */
};

/*
 * Read the lockout properties through the TCTI named by tcti (a TCTI config
 * string such as "device:/dev/tpmrm0" or "tabrmd:bus_type=session"; NULL: the
 * TSS default search). SC_ERR_UNSUPPORTED when built without the TSS2
 * libraries, SC_ERR_DEVICE when the TPM cannot be reached.
 */
int sc_tpm_read_lockout(const char *tcti, struct sc_tpm_lockout *out);

/* {"counter","max_tries","interval","recovery","in_lockout"} */
json_object *sc_tpm_lockout_json(const struct sc_tpm_lockout *l);

/* "16 min 40 s" style duration into buf. */
const char *sc_tpm_duration(unsigned long seconds, char *buf, size_t len);

#endif
