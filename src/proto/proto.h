/*
 * The agent protocol (docs/PROTOCOL.md): one JSON object per line, both ways.
 * This file is the one place that knows the framing, the size caps and the
 * table of operations with the shape of their arguments.
 */
#ifndef SC_PROTO_H
#define SC_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#define SC_PROTO_VERSION 1
#define SC_PROTO_MAX_REQUEST (256 * 1024)	/* agent side: longer lines drop the client */
#define SC_PROTO_MAX_RESPONSE (16 * 1024 * 1024)

/* A line reader over a socket that never holds more than max bytes. */
struct sc_linebuf {
	char *buf;
	size_t len, cap, max;
	size_t scan;		/* bytes already searched for '\n' */
};

void sc_linebuf_init(struct sc_linebuf *lb, size_t max);
void sc_linebuf_free(struct sc_linebuf *lb);
/*
 * Read what the fd has (one read()). Returns the number of bytes read, 0 at
 * end of file, SC_ERR_IO (errno set; EAGAIN included) or SC_ERR_TOO_LARGE when
 * a line would exceed max.
 */
long sc_linebuf_read(struct sc_linebuf *lb, int fd);
/*
 * Take the next complete line, without its '\n', as a malloc'd NUL-terminated
 * string. Returns 1 with a line, 0 when none is complete, SC_ERR_PROTOCOL for
 * a line with an embedded NUL (the line is consumed).
 */
int sc_linebuf_take(struct sc_linebuf *lb, char **line, size_t *len);

/* Argument kinds for the operation table. */
enum sc_arg_kind { SC_ARG_STRING, SC_ARG_INT, SC_ARG_BOOL, SC_ARG_B64 };

struct sc_arg_spec {
	const char *name;
	enum sc_arg_kind kind;
	int required;
};

#define SC_OP_MAX_ARGS 8
struct sc_op_spec {
	const char *name;
	struct sc_arg_spec args[SC_OP_MAX_ARGS];	/* ends with name == NULL */
};

/* The operation table, ending with name == NULL. */
extern const struct sc_op_spec sc_proto_ops[];

/* Longest "cas" (PEM text of CA certificates) list and find take: a system bundle fits. */
#define SC_PROTO_MAX_CAS (224 * 1024)

/*
 * How many bytes from the start of text[0..len) are valid UTF-8 (RFC 3629:
 * no overlong forms, no surrogates, nothing over U+10FFFF): len when all.
 */
size_t sc_utf8_check(const char *text, size_t len);

/*
 * Parse and check one request line: valid UTF-8 (else SC_ERR_INVALID), a
 * JSON object with an integer "id", a known "op", only the arguments the op
 * takes, of the right kinds, the required ones present; no key twice in an
 * object and no integer beyond int64 (json-c would keep the last and clamp:
 * SC_ERR_INVALID). On success *req holds the object and *op its spec.
 * On failure *id is the request's id if it had a usable one (else -1) and
 * *why says what is wrong (static string or malloc'd into whybuf).
 */
int sc_proto_parse_request(const char *line, size_t len, json_object **req,
    int64_t *id, const struct sc_op_spec **op, char *whybuf, size_t whylen);

/* A response line (with '\n'), malloc'd: {"id":..,"ok":true,"result":result}. Steals result. */
char *sc_proto_ok(int64_t id, json_object *result, size_t *len);
/* {"id":..,"ok":false,"error":{"code":name,"message":msg}}. */
char *sc_proto_error(int64_t id, int code, const char *msg, size_t *len);
/* An event line {"event":name,...fields}. Steals fields (may be NULL). */
char *sc_proto_event(const char *name, json_object *fields, size_t *len);

/* Serialise compactly, '/' not escaped. */
const char *sc_json_text(json_object *o);
/*
 * The same for a request that may carry a PIN ("pin", "so_pin", "new_pin"),
 * printed without leaving a copy of it in memory given back to malloc. The
 * text belongs to req: wipe it (explicit_bzero) before req is put.
 */
const char *sc_proto_text(json_object *req);
/*
 * Parse JSON text that may carry a PIN, leaving no copy of it in memory given
 * back to malloc (as sc_proto_parse_request does). NULL when text is not one
 * JSON value.
 */
json_object *sc_proto_parse_text(const char *text);
/*
 * Overwrite the "pin", "so_pin" and "new_pin" strings of a request in place,
 * before it is freed (the agent after handling it, the client after sending it).
 */
void sc_proto_wipe_pins(json_object *req);

#endif
