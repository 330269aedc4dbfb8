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

/*
 * The signing path's two lines, written and read without a JSON tree: the
 * request {"id":ID,"op":"sign","ref":REF,"alg":ALG,"digest"|"data":BASE64}
 * and the answer {"id":ID,"ok":true,"result":{"signature":BASE64}}, both
 * with '\n'. Building the request and parsing the answer as trees cost the
 * client 4-5 us a signature in a loop with warm caches, the answer's parse
 * 6-9 us in the RSA signing loop. Both are plain JSON, byte for byte what
 * json-c prints: the agent parses every request with json-c, and the client
 * parses with json-c any answer not in exactly this form.
 *
 * sc_proto_sign_line: malloc'd, or NULL when ref or alg hold a byte that JSON
 * escapes (a control, '"' or '\\': build that request with json-c) or no memory.
 */
char *sc_proto_sign_line(int64_t id, const char *ref, const char *alg, int is_digest,
    const unsigned char *in, size_t inlen, size_t *len);
/* malloc'd, or NULL when out of memory. */
char *sc_proto_signature_line(int64_t id, const unsigned char *sig, size_t siglen, size_t *len);
/*
 * When line[0..len) (without '\n') is exactly that answer for id, with
 * nothing but base64 between the quotes: 1, and *b64 and *b64len give the
 * base64 within line. Else 0.
 */
int sc_proto_signature_of(const char *line, size_t len, int64_t id, const char **b64, size_t *b64len);
/*
 * When line[0..len) (without '\n') begins as sc_proto_ok()'s answer for id
 * does, its result an object: 1, and *res, *reslen give the result's text
 * within line (the agent's own JSON, not checked further). Else 0.
 */
int sc_proto_result_of(const char *line, size_t len, int64_t id, const char **res, size_t *reslen);
/*
 * The sign request exactly as sc_proto_sign_line() writes it, its ref and alg
 * in printable ASCII: the object json-c would parse from it, built without
 * the tokener. NULL for anything else (for json-c). len without '\n'.
 */
json_object *sc_proto_sign_request_of(const char *line, size_t len);

/*
 * Wait up to spin_us for fd to become readable without sleeping: poll with a
 * zero timeout and sched_yield() in between. A thread that sleeps is woken on
 * another CPU through an inter-processor interrupt, which costs tens of
 * microseconds on virtual machines (measured in bench/); a short spin right
 * after a request keeps request/response pairs on running CPUs. But a spinner
 * takes a CPU from the thread it waits for when there are more runnable
 * threads than CPUs, and the scheduler counts it as load: two clients of an
 * agent signing RSA for both on two CPUs could settle with both spinners on
 * one CPU and both signers on the other, at half speed, in one round out of
 * four. A spin longer than SC_SPIN_LONG_US therefore stops when sched_yield()
 * keeps handing the CPU to threads that hand it back at once (other
 * spinners: half of its turns, SC_SPIN_BRIEF_US or less each); a CPU handed
 * to a thread that works is well spent. Shorter spins cost less than the sleep
 * and wake-up they spare, even on busy CPUs (two clients of ECDSA signatures:
 * ~12,000 a second waiting asleep, ~22,000 spinning). A spin of any length
 * stops too when one sched_yield() lost the CPU for over SC_SPIN_LOST_US: the
 * CPU is busy with work that runs for a scheduler's slice at a time (another
 * program's, say): a spinner that yields to it waits for the slice's end
 * (a millisecond or more), where a sleeper is woken at once. With two busy
 * loops on two CPUs, one client signing ECDSA through the agent made 1,900
 * signatures a second with both sides spinning, 4,900 with neither (in
 * process: 7,700). The agent's preparer (nice 19, up to ~120 us a turn) and
 * other spinners give the CPU back sooner. Returns 1 when readable (or on
 * error/hang-up, for the caller's read to see), 0 when the budget ran out,
 * -1 when the CPU is shared: wait asleep, and spin less.
 */
#define SC_SPIN_LONG_US 500
#define SC_SPIN_BRIEF_US 20
#define SC_SPIN_LOST_US 500
int sc_spin_readable(int fd, unsigned spin_us);

/*
 * How long a client spins for its next answer. Answers that came within
 * SC_SPIN_MAX_US are waited for twice as long as the last one took (an
 * answer just past the spin waits for a wake-up of up to a millisecond);
 * slower ones asleep, once SC_SPIN_SLOW_ANSWERS in a row were slow (an answer
 * waited for asleep took a wake-up too, about a millisecond on a busy virtual
 * machine, and would make every later answer look slow), and then one call
 * in SC_SPIN_PROBE spins to see whether they still are. After a spin that
 * found the CPU shared (sc_spin_readable() -1), none for SC_SPIN_BACKOFF_US,
 * twice as long after each such spin in a row, up to SC_SPIN_BACKOFF_MAX_US
 * (a CPU busy for long is tried once a second), until a spin catches its
 * answer. A zeroed struct is a new connection. The agent keeps one per
 * client for its own spin after each answer, of which it uses the pause.
 */
#define SC_SPIN_MAX_US 1500
#define SC_SPIN_SLOW_ANSWERS 3
#define SC_SPIN_PROBE 32
#define SC_SPIN_BACKOFF_US 10000
#define SC_SPIN_BACKOFF_MAX_US 1000000
struct sc_spin_policy {
	unsigned spin_us;		/* for the next answer; 0: asleep, but for probes */
	unsigned slow;			/* answers in a row slower than SC_SPIN_MAX_US */
	unsigned asleep;		/* calls waited for asleep, for the probes */
	unsigned backoff_us;		/* the last pause; 0: the last spin caught its answer */
	uint64_t nospin_until;		/* sc_now_us() */
};
/* The spin for the next answer (0: wait asleep). */
unsigned sc_spin_budget(struct sc_spin_policy *p, uint64_t now_us);
/* An answer came lat_us after its request. */
void sc_spin_answered(struct sc_spin_policy *p, uint64_t lat_us);
/* A spin returned r (sc_spin_readable()) at now_us. */
void sc_spin_result(struct sc_spin_policy *p, int r, uint64_t now_us);

/*
 * Whether the host of this (virtual) machine is busy: it took at least
 * SC_STEAL_BUSY_PCT percent of the CPUs' time for its other guests ("steal"
 * in /proc/stat) over the last SC_STEAL_WINDOW_US or more. Then a client
 * waits for its answer asleep: a spinner keeps its virtual CPU running, to be
 * scheduled by the host against its other guests' work. (The agent's spin
 * after an answer, at most 100 us, stays.)
 *
 * Measured here (bench-sign pair, one client spinning and one waiting asleep
 * on one agent, in turns of 100 ms): with steal under 1%, waiting asleep made
 * 0.92-1.01 of the spinner's RSA signatures and 0.80-1.01 of its ECDSA ones;
 * at 3-12%, 0.97-1.02 and 1.10-1.15. At 14-38% (separate runs in turns):
 * RSA 0.63-0.81 of in-process asleep against 0.55-0.78 spinning, five runs
 * out of five; ECDSA 0.50-0.55 against 0.20-0.39 in three of four (the fourth
 * 0.23 against 0.52). This rule against spinning always, paired the first
 * way: RSA 0.96-1.03 with steal under 3% (ten runs), 0.94 and 0.91 at 5-15%,
 * 1.08-1.31 at 15-30% (seven runs); ECDSA 0.99-1.21 at 0-10% (six runs),
 * 1.15-2.06 at 11-35% (five runs). Bare metal and machines without
 * /proc/stat: never busy.
 */
#define SC_STEAL_BUSY_PCT 4
#define SC_STEAL_WINDOW_US 500000	/* /proc/stat counts in 10 ms ticks: 100 a window on two CPUs */
struct sc_steal {
	uint64_t at_us;				/* when the counters below were read; 0: never */
	unsigned long long steal, total;	/* /proc/stat's cpu line, in ticks */
	int busy;
};
/* Take in /proc/stat's first line, read at now_us; returns s->busy. */
int sc_steal_update(struct sc_steal *s, const char *cpu_line, uint64_t now_us);
/* Read path's first line into s: s->busy, or -1 when it cannot be read. */
int sc_steal_read(struct sc_steal *s, const char *path, uint64_t now_us);
/* The process's own watch: reads /proc/stat at most once a window (thread-safe). */
int sc_host_busy(uint64_t now_us);

/* Serialise compactly, '/' not escaped. */
const char *sc_json_text(json_object *o);
/*
 * The same for a request that may carry a PIN ("pin", "so_pin"), printed
 * without leaving a copy of it in memory given back to malloc. The text
 * belongs to req: wipe it (explicit_bzero) before req is put.
 */
const char *sc_proto_text(json_object *req);
/*
 * Parse JSON text that may carry a PIN, leaving no copy of it in memory given
 * back to malloc (as sc_proto_parse_request does). NULL when text is not one
 * JSON value.
 */
json_object *sc_proto_parse_text(const char *text);
/*
 * Overwrite the "pin" and "so_pin" strings of a request in place, before it is
 * freed (the agent after handling it, the client after sending it).
 */
void sc_proto_wipe_pins(json_object *req);

#endif
