/*
 * TPM dictionary-attack facts. Read directly from the TPM with tss2-esys
 * rather than by running tpm2_getcap: one library call, no parsing of another
 * program's output, no fork in the agent. Each call opens and closes its own
 * TCTI connection, so it works beside tpm2-pkcs11's own connection through a
 * resource manager (tpm2-abrmd or the kernel's /dev/tpmrm0).
 */
#include "config.h"
#include <stdio.h>
#include <string.h>
#ifdef HAVE_TSS2
#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>
#endif
#include "common/err.h"
#include "common/log.h"
#include "token/tpm.h"

int
sc_tpm_read_lockout(const char *tcti, struct sc_tpm_lockout *out)
{
#ifdef HAVE_TSS2
	TSS2_TCTI_CONTEXT *tctx = NULL;
	ESYS_CONTEXT *esys = NULL;
	TPMS_CAPABILITY_DATA *cap = NULL;
	TPMI_YES_NO more = TPM2_NO;
	TSS2_RC rc;
	int r = SC_ERR_DEVICE, seen = 0;

	memset(out, 0, sizeof(*out));
	if (tcti != NULL && *tcti == '\0')
		tcti = NULL;
	if ((rc = Tss2_TctiLdr_Initialize(tcti, &tctx)) != TSS2_RC_SUCCESS) {
		sc_debug("TPM: cannot open the TCTI \"%s\": 0x%x", tcti ? tcti : "(default)", rc);
		goto out;
	}
	if ((rc = Esys_Initialize(&esys, tctx, NULL)) != TSS2_RC_SUCCESS) {
		sc_debug("TPM: Esys_Initialize: 0x%x", rc);
		goto out;
	}
	/* The variable properties (TPM2_PT_VAR) hold the permanent flags and the lockout state. */
	rc = Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
	    TPM2_CAP_TPM_PROPERTIES, TPM2_PT_VAR, TPM2_MAX_TPM_PROPERTIES, &more, &cap);
	if (rc != TSS2_RC_SUCCESS || cap == NULL) {
		sc_debug("TPM: GetCapability: 0x%x", rc);
		goto out;
	}
	for (UINT32 i = 0; i < cap->data.tpmProperties.count; i++) {
		const TPMS_TAGGED_PROPERTY *p = &cap->data.tpmProperties.tpmProperty[i];
		switch (p->property) {
		case TPM2_PT_PERMANENT:
			out->in_lockout = (p->value & TPMA_PERMANENT_INLOCKOUT) != 0;
			break;
		case TPM2_PT_LOCKOUT_COUNTER: out->counter = p->value; seen++; break;
		case TPM2_PT_MAX_AUTH_FAIL: out->max_tries = p->value; seen++; break;
		case TPM2_PT_LOCKOUT_INTERVAL: out->interval = p->value; break;
		case TPM2_PT_LOCKOUT_RECOVERY: out->recovery = p->value; break;
		}
	}
	r = seen == 2 ? SC_OK : SC_ERR_DEVICE;
out:
	Esys_Free(cap);
	if (esys != NULL)
		Esys_Finalize(&esys);
	if (tctx != NULL)
		Tss2_TctiLdr_Finalize(&tctx);
	return r;
#else
	memset(out, 0, sizeof(*out));
	return SC_ERR_UNSUPPORTED;
#endif
}

json_object *
sc_tpm_lockout_json(const struct sc_tpm_lockout *l)
{
	json_object *j = json_object_new_object();

	json_object_object_add(j, "counter", json_object_new_int64((int64_t)l->counter));
	json_object_object_add(j, "max_tries", json_object_new_int64((int64_t)l->max_tries));
	json_object_object_add(j, "interval", json_object_new_int64((int64_t)l->interval));
	json_object_object_add(j, "recovery", json_object_new_int64((int64_t)l->recovery));
	json_object_object_add(j, "in_lockout", json_object_new_boolean(l->in_lockout));
	return j;
}

const char *
sc_tpm_duration(unsigned long s, char *buf, size_t len)
{
	if (s >= 3600)
		snprintf(buf, len, "%lu h %lu min", s / 3600, (s % 3600) / 60);
	else if (s >= 60 && s % 60 != 0)
		snprintf(buf, len, "%lu min %lu s", s / 60, s % 60);
	else if (s >= 60)
		snprintf(buf, len, "%lu min", s / 60);
	else
		snprintf(buf, len, "%lu s", s);
	return buf;
}
