/*
 * The PC/SC watcher (src/token/pcsc.c) as the server sees it: its thread's
 * events go to the watchers and start a burst of slot re-reads; status says
 * whether PC/SC is there and how many readers it has.
 */
#include "config.h"
#include <pthread.h>
#include "common/err.h"
#include "common/log.h"
#include "daemon/server-private.h"
#include "token/pcsc.h"

/* From the PC/SC watcher thread: pass the event on and re-read slots soon. */
static void
pcsc_event(void *arg, const char *event, json_object *fields)
{
	struct sc_server *srv = arg;

	sc_info("pcsc: %s %s", event, json_object_to_json_string_ext(fields, JSON_C_TO_STRING_PLAIN));
	sc_server_broadcast(srv, event, fields);
	monitor_burst(srv);
}

void
readers_start(struct sc_server *srv)
{
	if ((srv->pcsc = sc_pcsc_new(pcsc_event, srv)) == NULL ||
	    sc_pcsc_start(srv->pcsc) != SC_OK)
		sc_warn("cannot start the PC/SC watcher: card and reader changes are "
		    "seen only when slots are re-read");
}

json_object *
readers_status(struct sc_server *srv)
{
	json_object *readers, *pcsc;
	char reason[256];

	pcsc = json_object_new_object();
	readers = sc_pcsc_readers(srv->pcsc, reason, sizeof(reason));
	json_object_object_add(pcsc, "available", json_object_new_boolean(readers != NULL));
	if (readers != NULL)
		json_object_object_add(pcsc, "readers", json_object_new_int(
		    (int)json_object_array_length(readers)));
	else
		json_object_object_add(pcsc, "reason", json_object_new_string(reason));
	json_object_put(readers);
	return pcsc;
}

