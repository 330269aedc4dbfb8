/*
 * PC/SC readers and cards (libpcsclite): a watcher thread for the agent that
 * blocks in SCardGetStatusChange and reports reader and card changes, and a
 * one-shot look for `scagent --direct list`. pcscd going away and coming back
 * is survived: the watcher reports it and reconnects.
 */
#ifndef SC_PCSC_H
#define SC_PCSC_H

#include <stddef.h>
#include <json-c/json.h>

struct sc_pcsc;

/*
 * Called from the watcher thread, never with a lock of the watcher held.
 * event: "reader-added", "reader-removed", "card-inserted", "card-removed",
 * "pcsc-available", "pcsc-unavailable". fields is a new object the callee
 * owns ({"reader": name}, plus "atr" for card-inserted, "reason" for
 * pcsc-unavailable, "readers" (a count) for pcsc-available).
 */
typedef void (*sc_pcsc_event_fn)(void *arg, const char *event, json_object *fields);

struct sc_pcsc *sc_pcsc_new(sc_pcsc_event_fn fn, void *arg);
/* Start the watcher thread. */
int sc_pcsc_start(struct sc_pcsc *p);
/* Stop the watcher and wait for it (cancels a blocked SCardGetStatusChange). */
void sc_pcsc_stop(struct sc_pcsc *p);
void sc_pcsc_free(struct sc_pcsc *p);

/*
 * The readers the watcher knows now: a new array of {"name", "card_present",
 * "atr" (hex, when a card is present), "mute", "in_use"}, or NULL while
 * PC/SC is unreachable (or not yet looked at); reason (may be NULL) then
 * gets why, as one line.
 */
json_object *sc_pcsc_readers(struct sc_pcsc *p, char *reason, size_t reasonlen);

/*
 * One look at PC/SC without a thread: establish a context, list the readers,
 * read their state without waiting, release. *readers as above; on failure
 * SC_ERR_DEVICE with reason filled.
 */
int sc_pcsc_snapshot(json_object **readers, char *reason, size_t reasonlen);

/*
 * Add readers (stolen; may be NULL) to a `list` result: "readers", each
 * reader given "token" (the label of a token in that reader, or null),
 * "tokens" (all of them) and "recognized" (a card is present and some module
 * shows a token for it), matched through the tokens' "reader" field. With
 * readers NULL, "readers_error" = reason is added instead (when reason is
 * not NULL).
 */
void sc_pcsc_list_add_readers(json_object *list, json_object *readers, const char *reason);

#endif
