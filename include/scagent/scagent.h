/*
 * libscagent: the client library of scagentd, the smart card agent.
 *
 * Every function returns 0 on success or a negative SCAGENT_E* code; after a
 * failure scagent_error() says what went wrong in one line. A client handle
 * may be shared by threads (calls on one handle are serialised); the library
 * never exits, aborts or prints. Data in and out is bytes; structured answers
 * are JSON text exactly as docs/PROTOCOL.md describes.
 */
#ifndef SCAGENT_SCAGENT_H
#define SCAGENT_SCAGENT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SCAGENT_PROTOCOL_VERSION 1

/* Error codes: the negative values of the protocol's error names. */
#define SCAGENT_EINTERNAL	(-1)
#define SCAGENT_ENOMEM		(-2)
#define SCAGENT_EINVAL		(-3)
#define SCAGENT_EIO		(-4)
#define SCAGENT_ETOOLARGE	(-5)
#define SCAGENT_EPROTO		(-6)
#define SCAGENT_EUNSUPPORTED	(-7)
#define SCAGENT_ENOTFOUND	(-8)
#define SCAGENT_EAMBIGUOUS	(-9)
#define SCAGENT_EMODULE		(-10)
#define SCAGENT_EPIN_INCORRECT	(-11)
#define SCAGENT_EPIN_LOCKED	(-12)
#define SCAGENT_EPIN_INVALID	(-13)
#define SCAGENT_EPIN_FINAL_TRY	(-14)
#define SCAGENT_ENOT_LOGGED_IN	(-15)
#define SCAGENT_ETOKEN_REMOVED	(-16)
#define SCAGENT_EDEVICE		(-17)
#define SCAGENT_EMECHANISM	(-18)
#define SCAGENT_EKEY		(-19)
#define SCAGENT_EBAD_SIGNATURE	(-20)
#define SCAGENT_EUNREACHABLE	(-21)
#define SCAGENT_EDENIED		(-22)
#define SCAGENT_ECANCELLED	(-23)
#define SCAGENT_ETIMEOUT	(-24)
#define SCAGENT_EBUSY		(-27)	/* e.g. scagent_connect(): the agent serves its maximum of clients */
#define SCAGENT_EALREADY	(-28)
#define SCAGENT_EPIN_REQUIRED	(-29)

typedef struct scagent_client scagent_client;

/*
 * The socket a client uses: path if not NULL, else $SCAGENT_SOCKET, else
 * $XDG_RUNTIME_DIR/scagent/agent.sock. Returns a malloc'd string or NULL.
 */
char *scagent_default_socket(const char *path);

/*
 * Connect and say hello. On failure *out is NULL, the code says why
 * (SCAGENT_EUNREACHABLE: no agent; SCAGENT_EBUSY: the agent serves as many
 * clients as it may; SCAGENT_ETIMEOUT: the agent did not answer in time;
 * SCAGENT_EINVAL: SCAGENT_TIMEOUT is not a number of seconds) and
 * scagent_error(NULL) the message.
 *
 * Every wait for the agent is bounded (docs/PROTOCOL.md, "How long a client
 * waits"): the connection and hello 10 s each; login, sign, keygen, import
 * and token creation or deletion 300 s (the agent may be asking a person
 * through pinentry); every other operation 30 s; a stopped agent (SIGSTOP)
 * 30 s whatever the operation. $SCAGENT_TIMEOUT (seconds, may have a
 * fraction) replaces all of them with one bound. When a wait ends, the call
 * returns SCAGENT_ETIMEOUT with a message naming the agent's socket and the
 * connection is closed (a late answer is never taken for another request's):
 * later calls on the handle return SCAGENT_EUNREACHABLE; connect again.
 */
int scagent_connect(const char *path, scagent_client **out);
/*
 * One bound, in milliseconds, for every later request on c, replacing the
 * per-operation ones; 0 goes back to $SCAGENT_TIMEOUT or those. Returns 0,
 * or SCAGENT_EINVAL for a negative ms. Since LIBSCAGENT_1.2.
 */
int scagent_set_timeout(scagent_client *c, int ms);
void scagent_close(scagent_client *c);
/*
 * The last failure's message on this handle ("" when none); with NULL, that
 * of this thread's last failed scagent_connect().
 */
const char *scagent_error(const scagent_client *c);
/* A short description of a code; never NULL. */
const char *scagent_strerror(int code);

/* `scagent list --json` as JSON text (caller frees with scagent_free). */
int scagent_list(scagent_client *c, char **json);
/* DER of the certificate REF names; *chain_json (may be NULL) gets a JSON array of base64 DER CA certificates from the token. */
int scagent_get_cert(scagent_client *c, const char *ref, unsigned char **der,
    size_t *derlen, char **chain_json);
int scagent_login(scagent_client *c, const char *token, const char *pin, int confirm_final_try);
int scagent_logout(scagent_client *c, const char *token);
/*
 * Sign with the key of certificate REF. alg is one of INTERFACE.md's names
 * ("rsa-pss-sha256", ...). is_digest: in is the hash already computed.
 */
int scagent_sign(scagent_client *c, const char *ref, const char *alg, int is_digest,
    const unsigned char *in, size_t inlen, unsigned char **sig, size_t *siglen);
/*
 * scagent_sign for a key that needs its PIN for every signature
 * (CKA_ALWAYS_AUTHENTICATE, a PIV card's signature key say): pin is tried
 * once, for this signature only; NULL lets the agent ask through its
 * pinentry, or answer SCAGENT_EPIN_REQUIRED having tried nothing. Keys
 * without the attribute ignore pin. confirm_final_try: spend the PIN's last
 * try. The library wipes its copies of pin.
 */
int scagent_sign_pin(scagent_client *c, const char *ref, const char *alg, int is_digest,
    const unsigned char *in, size_t inlen, const char *pin, int confirm_final_try,
    unsigned char **sig, size_t *siglen);
/*
 * Any operation: args_json is a JSON object of its arguments (or NULL);
 * *result_json gets the "result" object as text.
 */
int scagent_call(scagent_client *c, const char *op, const char *args_json, char **result_json);
/* Subscribe to events; then scagent_next_event() blocks for one (JSON text). timeout_ms < 0: forever. */
int scagent_watch(scagent_client *c);
int scagent_next_event(scagent_client *c, int timeout_ms, char **event_json);
/* The socket's file descriptor, for poll() while watching; -1 once a timeout closed the connection. */
int scagent_fd(const scagent_client *c);

void scagent_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
