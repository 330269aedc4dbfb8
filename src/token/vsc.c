/*
 * TPM virtual smart cards: the module that holds them (tpm2-pkcs11, or the
 * configured one), creating a token on its empty slot, deleting one through
 * tpm2_ptool and initialising the module again, their list, and the TPM's
 * dictionary-attack state, which login reads as PIN flags.
 */

#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <openssl/err.h>
#include "common/err.h"
#include "common/log.h"
#include "common/text.h"
#include "common/util.h"
#include "token/tpm.h"
#include "token/store-private.h"

int
sc_store_set_vsc_module(struct sc_store *st, const char *path)
{
	char real[PATH_MAX];
	char *copy = NULL;

	if (path != NULL) {
		if (realpath(path, real) == NULL)
			return SC_ERR_NOT_FOUND;
		if ((copy = strdup(real)) == NULL)
			return SC_ERR_NOMEM;
	}
	free(st->vsc_real);
	st->vsc_real = copy;
	return SC_OK;
}

/* tpm2-pkcs11 says who it is in C_GetInfo. */
int
module_is_tpm2_pkcs11(struct sc_module *m)
{
	static const char id[] = "tpm2-software.github.io";
	CK_INFO info;

	if (m->f == NULL || m->f->C_GetInfo(&info) != CKR_OK)
		return 0;
	return memcmp(info.manufacturerID, id, sizeof(id) - 1) == 0;
}

/* The module holding TPM virtual smart cards: the configured one, else tpm2-pkcs11. */
static struct sc_module *
vsc_module(struct sc_store *st)
{
	for (size_t i = 0; i < st->nmods; i++) {
		struct sc_module *m = st->mods[i];
		if (st->vsc_real != NULL ? strcmp(m->real, st->vsc_real) == 0 :
		    module_is_tpm2_pkcs11(m))
			return m;
	}
	return NULL;
}

const char *
sc_store_vsc_module(struct sc_store *st)
{
	struct sc_module *m = vsc_module(st);

	return m != NULL ? m->path : NULL;
}

/* The lockout state of the TPM under a tpm2-pkcs11 token (same TCTI as the module). */
static int
token_tpm_lockout(struct sc_token *t, struct sc_tpm_lockout *l)
{
	memset(l, 0, sizeof(*l));
	if (!module_is_tpm2_pkcs11(t->mod))
		return SC_ERR_UNSUPPORTED;
	return sc_tpm_read_lockout(getenv("TPM2_PKCS11_TCTI"), l);
}

/*
 * tpm2-pkcs11 never sets the PIN flags: the TPM's dictionary-attack counter
 * is the truth. Map it to them so that login treats a TPM like a card: no
 * try on a locked TPM, and the try that would lock it only when confirmed.
 */
CK_FLAGS
tpm_pin_flags(struct sc_store *st, struct sc_token *t)
{
	struct sc_tpm_lockout l;

	if (token_tpm_lockout(t, &l) != SC_OK || l.max_tries == 0)
		return 0;
	if (l.in_lockout || l.counter >= l.max_tries)
		return CKF_USER_PIN_LOCKED;
	if (l.counter + 1 >= l.max_tries)
		return CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_COUNT_LOW;
	return l.counter > 0 ? CKF_USER_PIN_COUNT_LOW : 0;
}

int
sc_store_tpm_lockout(struct sc_store *st, const char *token_label, json_object **out)
{
	struct sc_tpm_lockout l;
	struct sc_token *t;
	int r;

	*out = NULL;
	if ((t = store_find_label(st, token_label, &r)) == NULL)
		return r;
	if ((r = token_tpm_lockout(t, &l)) == SC_OK)
		*out = sc_tpm_lockout_json(&l);
	token_unref(t);
	return r;
}

/* Run `tpm2_ptool rmtoken --label LABEL [--path STORE]`; its first output line goes to why. */
static int
ptool_rmtoken(const char *label, char *why, size_t whylen)
{
	extern char **environ;
	const char *store = getenv("TPM2_PKCS11_STORE");
	char *argv[] = { "tpm2_ptool", "rmtoken", "--label", (char *)label,
	    store ? "--path" : NULL, (char *)store, NULL };
	posix_spawn_file_actions_t fa;
	char buf[1024], *nl;
	size_t got = 0;
	ssize_t n;
	int p[2], status = 0, err, r = SC_ERR_DEVICE;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return SC_ERR_IO;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	/* posix_spawn: no copy of the modules' state, the child only execs. */
	err = posix_spawnp(&pid, "tpm2_ptool", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	if (err != 0) {
		close(p[0]);
		snprintf(why, whylen, "cannot run tpm2_ptool (Debian package libtpm2-pkcs11-tools), "
		    "which removes tokens from the tpm2-pkcs11 store: %s", strerror(err));
		return SC_ERR_UNSUPPORTED;
	}
	while ((n = read(p[0], buf + got, sizeof(buf) - 1 - got)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		if (got + (size_t)n < sizeof(buf) - 1)
			got += (size_t)n;
		else {
			char sink[512];	/* keep draining so the child never blocks */
			got = sizeof(buf) - 1;
			while (read(p[0], sink, sizeof(sink)) > 0)
				;
			break;
		}
	}
	close(p[0]);
	buf[got] = '\0';
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		r = SC_OK;
	} else {
		if ((nl = strchr(buf, '\n')) != NULL)
			*nl = '\0';
		snprintf(why, whylen, "tpm2_ptool rmtoken failed: %s", *buf ? buf : "no reason given");
	}
	return r;
}

/*
 * Finalize and initialise a module again: tpm2-pkcs11 reads its store only
 * in C_Initialize. The module's tokens are dropped (and marked dead, so no
 * stale session handle is ever used) and found again by the next refresh.
 */
static int
module_reinit(struct sc_store *st, struct sc_module *m)
{
	int r = SC_OK;

	pthread_mutex_lock(&st->refresh_lock);
	pthread_mutex_lock(&m->lock);
	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; i < st->ntoks;) {
		struct sc_token *t = st->toks[i];
		if (t->mod != m) {
			i++;
			continue;
		}
		/* Reported at the next refresh, which adds those still there again. */
		if (st->pending == NULL)
			st->pending = json_object_new_array();
		sc_info("token \"%s\" dropped: %s is initialised again", t->label, m->path);
		token_event(st->pending, "token-removed", t);
		pthread_mutex_lock(&t->lock);
		t->dead = 1;
		t->npool = 0;		/* C_Finalize closes them all */
		t->login_session = CK_INVALID_HANDLE;
		login_forget_locked(t);
		pthread_mutex_unlock(&t->lock);
		memmove(&st->toks[i], &st->toks[i + 1], (st->ntoks - i - 1) * sizeof(*st->toks));
		st->ntoks--;
		token_unref(t);
	}
	pthread_mutex_unlock(&st->lock);
	if (m->slots)
		PKCS11_release_all_slots(m->ctx, m->slots, m->nslots);
	m->slots = NULL;
	m->nslots = 0;
	PKCS11_CTX_unload(m->ctx);
	PKCS11_CTX_free(m->ctx);
	if ((m->ctx = PKCS11_CTX_new()) == NULL) {
		r = SC_ERR_NOMEM;
	} else if (PKCS11_CTX_load(m->ctx, m->real) != 0 ||
	    PKCS11_enumerate_slots(m->ctx, &m->slots, &m->nslots) != 0) {
		sc_error("module %s could not be initialised again", m->path);
		ERR_clear_error();
		r = SC_ERR_MODULE;
	}
	pthread_mutex_unlock(&m->lock);
	pthread_mutex_unlock(&st->refresh_lock);
	return r;
}

int
sc_store_init_token(struct sc_store *st, const char *label, const char *so_pin,
    const char *user_pin, char *why, size_t whylen)
{
	struct sc_module *m;
	struct sc_token *t;
	CK_SLOT_ID *ids = NULL, slot = 0;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_UTF8CHAR lab[32];
	CK_ULONG n = 0;
	CK_RV rv;
	size_t len = strlen(label);
	int r, found = 0;

	*why = '\0';
	if ((m = vsc_module(st)) == NULL) {
		snprintf(why, whylen, "no TPM virtual smart card module is loaded: configure tpm2-pkcs11 "
		    "(modules.d/tpm2-pkcs11.module or vsc-module in scagent.conf, or scagentd --vsc-module PATH)");
		return SC_ERR_UNSUPPORTED;
	}
	if (len == 0 || len > sizeof(lab)) {
		snprintf(why, whylen, "a token label has 1 to %zu bytes", sizeof(lab));
		return SC_ERR_INVALID;
	}
	if (strlen(so_pin) < 4 || strlen(user_pin) < 4) {
		snprintf(why, whylen, "the user PIN and the SO PIN need at least 4 characters");
		return SC_ERR_PIN_INVALID;
	}
	if ((t = store_find_label(st, label, &r)) != NULL || r == SC_ERR_AMBIGUOUS) {
		token_unref(t);
		snprintf(why, whylen, "a token labelled \"%s\" exists already; choose another label", label);
		return SC_ERR_ALREADY;
	}
	pthread_mutex_lock(&st->refresh_lock);
	pthread_mutex_lock(&m->lock);
	rv = m->f->C_GetSlotList(CK_TRUE, NULL, &n);
	if (rv == CKR_OK && n > 0 && n < 1024) {
		if ((ids = calloc(n, sizeof(*ids))) == NULL)
			rv = CKR_HOST_MEMORY;
		else
			rv = m->f->C_GetSlotList(CK_TRUE, ids, &n);
	}
	for (CK_ULONG i = 0; rv == CKR_OK && ids != NULL && i < n && !found; i++) {
		CK_TOKEN_INFO ti;
		if (m->f->C_GetTokenInfo(ids[i], &ti) == CKR_OK && !(ti.flags & CKF_TOKEN_INITIALIZED)) {
			slot = ids[i];
			found = 1;
		}
	}
	if (rv != CKR_OK) {
		snprintf(why, whylen, "cannot list the slots of %s: %s", m->path, sc_ckr_name(rv));
		r = sc_err_from_ckr(rv);
		goto out;
	}
	if (!found) {
		snprintf(why, whylen, "%s offers no empty slot for a new token", m->path);
		r = SC_ERR_UNSUPPORTED;
		goto out;
	}
	memset(lab, ' ', sizeof(lab));
	memcpy(lab, label, len);
	if ((rv = m->f->C_InitToken(slot, (CK_UTF8CHAR_PTR)so_pin, strlen(so_pin), lab)) != CKR_OK) {
		snprintf(why, whylen, "the module could not create the token (C_InitToken: %s)%s",
		    sc_ckr_name(rv), module_is_tpm2_pkcs11(m) ? "; is the TPM reachable (tpm-tcti) "
		    "and the store directory writable (tpm-store)?" : "");
		r = sc_err_from_ckr(rv);
		goto out;
	}
	rv = m->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
	if (rv == CKR_OK)
		rv = m->f->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)so_pin, strlen(so_pin));
	if (rv == CKR_OK) {
		rv = m->f->C_InitPIN(s, (CK_UTF8CHAR_PTR)user_pin, strlen(user_pin));
		m->f->C_Logout(s);
	}
	if (rv != CKR_OK) {
		snprintf(why, whylen, "token \"%s\" was created but its user PIN could not be set (%s); "
		    "delete it with `scagent vsc delete --label %s` and try again", label,
		    sc_ckr_name(rv), label);
		r = sc_err_from_ckr(rv);
		goto out;
	}
	sc_info("created token \"%s\" on %s", label, m->path);
	r = SC_OK;
out:
	if (s != CK_INVALID_HANDLE)
		m->f->C_CloseSession(s);
	pthread_mutex_unlock(&m->lock);
	pthread_mutex_unlock(&st->refresh_lock);
	free(ids);
	return r;
}

int
sc_store_delete_token(struct sc_store *st, const char *label, char *why, size_t whylen)
{
	struct sc_module *m;
	struct sc_token *t;
	int r;

	*why = '\0';
	if ((m = vsc_module(st)) == NULL) {
		snprintf(why, whylen, "no TPM virtual smart card module is loaded");
		return SC_ERR_UNSUPPORTED;
	}
	if ((t = store_find_label(st, label, &r)) == NULL) {
		snprintf(why, whylen, r == SC_ERR_NOT_FOUND ? "no token labelled \"%s\"; see "
		    "`scagent vsc list`" : "more than one token is labelled \"%s\"", label);
		return r;
	}
	if (t->mod != m) {
		snprintf(why, whylen, "token \"%s\" is not a TPM virtual smart card (it belongs to %s); "
		    "scagent deletes only those", label, t->mod->path);
		token_unref(t);
		return SC_ERR_DENIED;
	}
	if (!module_is_tpm2_pkcs11(m)) {
		/* C_InitToken cannot remove a token; only tpm2-pkcs11's store tool can. */
		snprintf(why, whylen, "deleting a token is supported with tpm2-pkcs11 only");
		token_unref(t);
		return SC_ERR_UNSUPPORTED;
	}
	token_logout(t);	/* not logged in is fine */
	token_unref(t);
	if ((r = ptool_rmtoken(label, why, whylen)) != SC_OK)
		return r;
	sc_info("deleted token \"%s\" from the tpm2-pkcs11 store", label);
	if ((r = module_reinit(st, m)) != SC_OK) {
		snprintf(why, whylen, "token \"%s\" was deleted, but %s could not be initialised again; "
		    "restart the agent", label, m->path);
		return r;
	}
	return SC_OK;
}

json_object *
sc_store_vsc_list_json(struct sc_store *st)
{
	json_object *j = json_object_new_object(), *toks = json_object_new_array();
	struct sc_module *m = vsc_module(st);
	struct sc_tpm_lockout l;
	struct sc_token **v;
	const char *tcti = getenv("TPM2_PKCS11_TCTI"), *store = getenv("TPM2_PKCS11_STORE");
	size_t n;

	json_object_object_add(j, "module", m ? json_object_new_string(m->path) : NULL);
	json_object_object_add(j, "tcti", tcti ? json_object_new_string(tcti) : NULL);
	json_object_object_add(j, "store", store ? json_object_new_string(store) : NULL);
	if (m != NULL && module_is_tpm2_pkcs11(m) && sc_tpm_read_lockout(tcti, &l) == SC_OK)
		json_object_object_add(j, "lockout", sc_tpm_lockout_json(&l));
	v = tokens_get(st, &n);
	for (size_t i = 0; m != NULL && i < n; i++) {
		struct sc_token *t = v[i];
		struct sc_objset *o;
		struct sc_kp *kps = NULL;
		size_t nk = 0;
		CK_SESSION_HANDLE s;
		CK_TOKEN_INFO ti;
		json_object *tj;
		int logged_in;

		if (t->mod != m)
			continue;
		if (session_get(t, &s) == SC_OK) {
			int rr = token_keypairs(t, s, &kps, &nk);
			session_put(t, s, rr == SC_ERR_TOKEN_REMOVED);
		}
		pthread_mutex_lock(&t->lock);
		ti = t->info;
		logged_in = t->logged_in;
		pthread_mutex_unlock(&t->lock);
		o = token_objs(t);
		tj = json_object_new_object();
		sc_json_add_text(tj, "label", t->label);
		sc_json_add_text(tj, "serial", t->serial);
		json_object_object_add(tj, "slot", json_object_new_int64((int64_t)t->slot));
		sc_json_add_text(tj, "manufacturer", t->manufacturer);
		sc_json_add_text(tj, "model", t->model);
		json_object_object_add(tj, "keys", json_object_new_int64((int64_t)nk));
		json_object_object_add(tj, "certificates", json_object_new_int64(o ? (int64_t)o->ncerts : 0));
		json_object_object_add(tj, "flags", token_flags_json(&ti, logged_in));
		json_object_array_add(toks, tj);
		objset_unref(o);
		kps_free(kps, nk);
	}
	tokens_put(v, n);
	json_object_object_add(j, "tokens", toks);
	return j;
}
