/*
 * Slots and tokens (OpenSC's pkcs11-slot.c): C_GetSlotList, C_GetSlotInfo,
 * C_GetTokenInfo, C_WaitForSlotEvent, the mechanisms a token offers
 * (C_GetMechanismList, C_GetMechanismInfo), and the slot helpers the other
 * files use.
 */
#include "config.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <poll.h>
#include <json-c/json.h>
#include <p11-kit/uri.h>
#include "common/err.h"
#include "pkcs11/p11mod.h"
#include "scagent/scagent.h"

#define WAIT_POLL_MS 5000	/* C_WaitForSlotEvent re-lists at least this often */
#define CKF_EC_PARAMETERS_ (1UL << 22)	/* PKCS#11 2.40's CKF_EC_PARAMETERS, not in p11-kit's header */

/* ------------------------------------------------------------------ */
/* Slots and objects */

struct p11_slot *
slot_get(CK_SLOT_ID id)
{
	for (size_t i = 0; i < g.nslots; i++)
		if (g.slots[i]->id == id)
			return g.slots[i];
	return NULL;
}


/* With g.lock held: slot id, when it exists and has a token. */
CK_RV
present_slot(CK_SLOT_ID id, struct p11_slot **s)
{
	if (!g.initialized)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if ((*s = slot_get(id)) == NULL)
		return CKR_SLOT_ID_INVALID;
	return (*s)->present ? CKR_OK : CKR_TOKEN_NOT_PRESENT;
}

void
slot_drop_mechs(struct p11_slot *s)
{
	free(s->mechs);
	free(s->minfo);
	s->mechs = NULL;
	s->minfo = NULL;
	s->nmechs = 0;
	s->mechs_loaded = 0;
}

void
slot_drop_objs(struct p11_slot *s)
{
	for (size_t i = 0; i < s->nobjs; i++)
		p11_object_clear(&s->objs[i]);
	free(s->objs);
	s->objs = NULL;
	s->nobjs = 0;
}

void
slot_free(struct p11_slot *s)
{
	if (s == NULL)
		return;
	slot_drop_objs(s);
	slot_drop_mechs(s);
	free(s->ident);
	free(s->label);
	free(s->serial);
	free(s->manufacturer);
	free(s->model);
	free(s->reader);
	free(s);
}

struct p11_object *
slot_object(struct p11_slot *s, CK_OBJECT_HANDLE h)
{
	for (size_t i = 0; s != NULL && i < s->nobjs; i++)
		if (s->objs[i].handle == h)
			return &s->objs[i];
	return NULL;
}

/* Private objects are seen in user sessions only. */
int
object_visible(const struct p11_slot *s, const struct p11_object *o)
{
	return !o->private_obj || s->logged_in;
}

/*
 * How the agent is told which token a slot is: a token URI with its label,
 * serial, manufacturer and model, so that two tokens with one label (two
 * cards of one person, two YubiKeys "PIV_II") stay apart. Freed with free().
 */
char *
slot_token_uri(const struct p11_slot *s)
{
	P11KitUri *uri = p11_kit_uri_new();
	CK_TOKEN_INFO *ti;
	char *out = NULL;

	if (uri == NULL)
		return NULL;
	ti = p11_kit_uri_get_token_info(uri);
	pad(ti->label, sizeof(ti->label), s->label);
	pad(ti->serialNumber, sizeof(ti->serialNumber), s->serial);
	pad(ti->manufacturerID, sizeof(ti->manufacturerID), s->manufacturer);
	pad(ti->model, sizeof(ti->model), s->model);
	if (p11_kit_uri_format(uri, P11_KIT_URI_FOR_TOKEN, &out) != P11_KIT_URI_OK)
		out = NULL;
	p11_kit_uri_free(uri);
	return out;
}

CK_RV
slot_load_mechs(CK_SLOT_ID id)
{
	struct agent_conn *ac;
	struct p11_slot *s;
	json_object *res = NULL, *arr;
	CK_MECHANISM_TYPE *mechs = NULL;
	CK_MECHANISM_INFO *minfo = NULL;
	char *label = NULL, *args = NULL, *text = NULL;
	size_t n = 0, nspecs;
	const struct p11_mech_spec *specs = p11_mech_list(&nspecs);
	int r = SC_ERR_AGENT_UNREACHABLE, all;
	CK_RV rv = CKR_OK;

	pthread_mutex_lock(&g.lock);
	if ((rv = present_slot(id, &s)) == CKR_OK && !s->mechs_loaded &&
	    (label = slot_token_uri(s)) == NULL)
		rv = CKR_HOST_MEMORY;
	pthread_mutex_unlock(&g.lock);
	if (rv != CKR_OK || label == NULL)
		return rv;

	arr = json_object_new_object();
	json_object_object_add(arr, "token", json_object_new_string(label));
	args = strdup(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN));
	json_object_put(arr);
	if (args != NULL && (ac = conn_get()) != NULL) {
		r = scagent_call(ac->c, "mechanisms", args, &text);
		conn_put(ac, r);
	}
	free(args);
	free(label);
	if (r == SC_OK)
		res = json_tokener_parse(text);
	scagent_free(text);
	arr = jarr(res, "mechanisms");
	if (r != SC_OK && r != SC_ERR_UNSUPPORTED) {
		json_object_put(res);
		return ckr_from_agent(r);
	}
	/* An agent without the op, or a token that lists none: offer all. */
	all = arr == NULL || json_object_array_length(arr) == 0;
	if ((mechs = calloc(nspecs, sizeof(*mechs))) == NULL ||
	    (minfo = calloc(nspecs, sizeof(*minfo))) == NULL) {
		free(mechs);
		json_object_put(res);
		return CKR_HOST_MEMORY;
	}
	for (size_t i = 0; i < nspecs; i++) {
		/*
		 * Only CKF_SIGN: C_Verify works, in-process with the
		 * certificate's key, but a module that lists CKF_VERIFY gets
		 * pkcs11-tool --test to sign arbitrary data with raw
		 * CKM_RSA_PKCS, which the agent refuses (a SHA-2 DigestInfo only).
		 */
		CK_MECHANISM_INFO mi = { 0, 0, CKF_SIGN };
		int have = all;

		for (size_t k = 0; !all && k < json_object_array_length(arr); k++) {
			json_object *m = json_object_array_get_idx(arr, k), *v;
			CK_FLAGS fl;
			if (!json_object_object_get_ex(m, "type", &v) ||
			    (CK_MECHANISM_TYPE)json_object_get_int64(v) != specs[i].token_mech)
				continue;
			fl = json_object_object_get_ex(m, "flags", &v) ? (CK_FLAGS)json_object_get_int64(v) : 0;
			if (!(fl & CKF_SIGN))
				continue;
			have = 1;
			mi.flags = CKF_SIGN | (fl & (CKF_HW | CKF_EC_F_P | CKF_EC_NAMEDCURVE |
			    CKF_EC_UNCOMPRESS | CKF_EC_COMPRESS | CKF_EC_PARAMETERS_));
			if (json_object_object_get_ex(m, "min_key_size", &v))
				mi.ulMinKeySize = (CK_ULONG)json_object_get_int64(v);
			if (json_object_object_get_ex(m, "max_key_size", &v))
				mi.ulMaxKeySize = (CK_ULONG)json_object_get_int64(v);
		}
		if (!have)
			continue;
		mechs[n] = specs[i].type;
		minfo[n] = mi;
		n++;
	}
	json_object_put(res);
	pthread_mutex_lock(&g.lock);
	if (g.initialized && (s = slot_get(id)) != NULL && s->present && !s->mechs_loaded) {
		s->mechs = mechs;
		s->minfo = minfo;
		s->nmechs = n;
		s->mechs_loaded = 1;
		mechs = NULL;
		minfo = NULL;
	}
	pthread_mutex_unlock(&g.lock);
	free(mechs);
	free(minfo);
	return CKR_OK;
}

int
slot_has_mech(const struct p11_slot *s, CK_MECHANISM_TYPE m)
{
	for (size_t i = 0; i < s->nmechs; i++)
		if (s->mechs[i] == m)
			return 1;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Slots and tokens */

CK_RV
p11_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount)
{
	CK_ULONG n = 0;
	CK_RV rv = CKR_OK;
	int listed;

	pthread_mutex_lock(&g.lock);
	rv = g.initialized ? CKR_OK : CKR_CRYPTOKI_NOT_INITIALIZED;
	listed = g.listed;
	pthread_mutex_unlock(&g.lock);
	if (rv != CKR_OK)
		return rv;
	if (pulCount == NULL)
		return CKR_ARGUMENTS_BAD;
	/* Re-list on the size query: the list that sizes the buffer is the one it gets. */
	if (pSlotList == NULL || !listed)
		refresh(1);
	pthread_mutex_lock(&g.lock);
	if (!g.initialized) {
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
		goto out;
	}
	for (size_t i = 0; i < g.nslots; i++)
		if (!tokenPresent || g.slots[i]->present)
			n++;
	if (pSlotList == NULL) {
		*pulCount = n;
		goto out;
	}
	if (*pulCount < n) {
		*pulCount = n;
		rv = CKR_BUFFER_TOO_SMALL;
		goto out;
	}
	n = 0;
	for (size_t i = 0; i < g.nslots; i++)
		if (!tokenPresent || g.slots[i]->present)
			pSlotList[n++] = g.slots[i]->id;
	*pulCount = n;
out:
	pthread_mutex_unlock(&g.lock);
	return rv;
}

CK_RV
p11_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo)
{
	struct p11_slot *s;
	CK_RV rv = CKR_OK;
	char desc[128];

	refresh(0);
	pthread_mutex_lock(&g.lock);
	if (!g.initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	else if (pInfo == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else if ((s = slot_get(slotID)) == NULL)
		rv = CKR_SLOT_ID_INVALID;
	else {
		memset(pInfo, 0, sizeof(*pInfo));
		snprintf(desc, sizeof(desc), "scagent: %s", s->label ? s->label : "");
		pad(pInfo->slotDescription, sizeof(pInfo->slotDescription), desc);
		pad(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), "scagent");
		pInfo->flags = CKF_REMOVABLE_DEVICE | (s->present ? CKF_TOKEN_PRESENT : 0);
	}
	pthread_mutex_unlock(&g.lock);
	return rv;
}

CK_RV
p11_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo)
{
	struct p11_slot *s;
	CK_RV rv = CKR_OK;

	refresh(0);
	pthread_mutex_lock(&g.lock);
	if (!g.initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	else if (pInfo == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else if ((s = slot_get(slotID)) == NULL)
		rv = CKR_SLOT_ID_INVALID;
	else if (!s->present)
		rv = CKR_TOKEN_NOT_PRESENT;
	else {
		memset(pInfo, 0, sizeof(*pInfo));
		pad(pInfo->label, sizeof(pInfo->label), s->label);
		pad(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), s->manufacturer);
		pad(pInfo->model, sizeof(pInfo->model), s->model);
		pad(pInfo->serialNumber, sizeof(pInfo->serialNumber), s->serial);
		/*
		 * The token's own write protection. Through the agent nothing is
		 * written (C_CreateObject and the like are not supported), but
		 * programs such as pkcs11-tool --test open R/W sessions anyway.
		 */
		pInfo->flags = CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED;
		if (s->write_protected)
			pInfo->flags |= CKF_WRITE_PROTECTED;
		if (s->login_required)
			pInfo->flags |= CKF_LOGIN_REQUIRED;
		if (s->protected_path)
			pInfo->flags |= CKF_PROTECTED_AUTHENTICATION_PATH;
		if (s->count_low)
			pInfo->flags |= CKF_USER_PIN_COUNT_LOW;
		if (s->final_try)
			pInfo->flags |= CKF_USER_PIN_FINAL_TRY;
		if (s->locked)
			pInfo->flags |= CKF_USER_PIN_LOCKED;
		pInfo->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
		pInfo->ulSessionCount = session_count(s->id);
		pInfo->ulMaxRwSessionCount = s->write_protected ? 0 : CK_EFFECTIVELY_INFINITE;
		pInfo->ulRwSessionCount = rw_session_count(s->id);
		pInfo->ulMaxPinLen = 255;
		pInfo->ulMinPinLen = 1;
		pInfo->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
		pInfo->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
		pInfo->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
		pInfo->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
		pad(pInfo->utcTime, sizeof(pInfo->utcTime), "");
	}
	pthread_mutex_unlock(&g.lock);
	return rv;
}

/* The first pending slot event, cleared; 0 when none. g.lock held. */
static int
take_event(CK_SLOT_ID *slot)
{
	for (size_t i = 0; i < g.nslots; i++)
		if (g.slots[i]->event) {
			g.slots[i]->event = 0;
			*slot = g.slots[i]->id;
			return 1;
		}
	return 0;
}

CK_RV
p11_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved)
{
	scagent_client *watch = NULL;
	CK_RV rv = CKR_OK;
	int wakefd;

	pthread_mutex_lock(&g.lock);
	rv = g.initialized ? CKR_OK : CKR_CRYPTOKI_NOT_INITIALIZED;
	pthread_mutex_unlock(&g.lock);
	if (rv != CKR_OK)
		return rv;
	if (pSlot == NULL || pReserved != NULL)
		return CKR_ARGUMENTS_BAD;
	refresh(1);
	pthread_mutex_lock(&g.lock);
	if (!g.initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	else if (take_event(pSlot))
		rv = CKR_OK;
	else if (flags & CKF_DONT_BLOCK)
		rv = CKR_NO_EVENT;
	else {
		g.waiters++;
		rv = CKR_NO_EVENT;	/* not returned: means "keep waiting" */
	}
	wakefd = g.wake[0];
	pthread_mutex_unlock(&g.lock);
	if (rv != CKR_NO_EVENT || (flags & CKF_DONT_BLOCK))
		return rv;

	for (;;) {
		struct pollfd p[2] = { { wakefd, POLLIN, 0 }, { -1, POLLIN, 0 } };
		char *ev = NULL;
		int r;

		if (watch == NULL && scagent_connect(NULL, &watch) == SC_OK &&
		    scagent_watch(watch) != SC_OK) {
			scagent_close(watch);
			watch = NULL;
		}
		p[1].fd = watch ? scagent_fd(watch) : -1;
		if (poll(p, 2, watch ? WAIT_POLL_MS : 1000) < 0 && errno != EINTR)
			break;
		if (p[1].revents) {
			/* Drain what came: the listing below says what changed. */
			while ((r = scagent_next_event(watch, 0, &ev)) == SC_OK) {
				scagent_free(ev);
				ev = NULL;
			}
			if (r != SC_ERR_TIMEOUT) {
				scagent_close(watch);
				watch = NULL;
			}
		}
		if (!p[0].revents)
			refresh(1);
		pthread_mutex_lock(&g.lock);
		if (!g.initialized) {
			rv = CKR_CRYPTOKI_NOT_INITIALIZED;
			break;
		}
		if (take_event(pSlot)) {
			rv = CKR_OK;
			break;
		}
		pthread_mutex_unlock(&g.lock);
	}
	g.waiters--;
	pthread_cond_broadcast(&g.cond);
	pthread_mutex_unlock(&g.lock);
	scagent_close(watch);
	return rv;
}

CK_RV
p11_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList, CK_ULONG_PTR pulCount)
{
	struct p11_slot *s;
	CK_RV rv;

	if (pulCount == NULL)
		return if_initialized(CKR_ARGUMENTS_BAD);
	refresh(0);
	if ((rv = slot_load_mechs(slotID)) != CKR_OK)
		return rv;
	pthread_mutex_lock(&g.lock);
	if ((rv = present_slot(slotID, &s)) == CKR_OK) {
		if (pMechanismList != NULL && *pulCount < s->nmechs)
			rv = CKR_BUFFER_TOO_SMALL;
		else if (pMechanismList != NULL && s->nmechs > 0)
			memcpy(pMechanismList, s->mechs, s->nmechs * sizeof(*s->mechs));
		*pulCount = s->nmechs;
	}
	pthread_mutex_unlock(&g.lock);
	return rv;
}

CK_RV
p11_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo)
{
	struct p11_slot *s;
	CK_RV rv;

	if (pInfo == NULL)
		return if_initialized(CKR_ARGUMENTS_BAD);
	refresh(0);
	if ((rv = slot_load_mechs(slotID)) != CKR_OK)
		return rv;
	pthread_mutex_lock(&g.lock);
	if ((rv = present_slot(slotID, &s)) == CKR_OK) {
		rv = CKR_MECHANISM_INVALID;
		for (size_t i = 0; i < s->nmechs; i++)
			if (s->mechs[i] == type) {
				*pInfo = s->minfo[i];
				rv = CKR_OK;
			}
	}
	pthread_mutex_unlock(&g.lock);
	return rv;
}

