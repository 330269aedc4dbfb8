/*
 * Signature throughput: in-process PKCS#11 (any module: SoftHSM directly, or
 * p11-kit-client.so for `p11-kit server`), through scagentd, and through
 * ssh-agent. A TARGET is one of
 *
 *   pkcs11 MODULE TOKEN KEYLABEL ALG     (PIN in $BENCH_PIN)
 *   agent SOCKET REF ALG
 *   ssh SOCKET rsa|ecdsa
 *
 *   bench-sign TARGET THREADS SECONDS    prints "<ops/s> <ops> <seconds>"
 *   bench-sign pair SECONDS THREADS TARGET-A vs TARGET-B
 *                                     prints "<A ops/s> <B ops/s> <B/A>": A and B
 *                                     take turns in slices of 100 ms (A B B A ...),
 *                                     so that a machine that speeds up or slows
 *                                     down during the run does so for both;
 *                                     with fewer threads than CPUs, each thread
 *                                     moves to the next CPU after each A B B A;
 *                                     then "<A steal %> <B steal %>": the share
 *                                     of the CPUs' time the host took for
 *                                     others (/proc/stat) during A's and B's
 *                                     slices
 *   bench-sign lat COUNT TARGET-A vs TARGET-B
 *                                     one thread signs with A and B in turns of
 *                                     ten signatures (each turn after one
 *                                     uncounted), COUNT in all each; prints the
 *                                     mean, median, 90th, 99th percentile and
 *                                     largest time of one signature (us), then
 *                                     the mean of B minus the mean of A: where
 *                                     a ratio's difference comes from, the
 *                                     typical signature or the slow few
 *   bench-sign list SOCKET COUNT      (prints the median list time in ms)
 *   bench-sign ping SOCKET COUNT      (median round trip of an empty request, us)
 *   bench-sign verify COUNT           (median RSA-2048 PKCS#1 verification, us:
 *                                      what the agent adds to every RSA signature)
 */
#include "config.h"
#include <arpa/inet.h>
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <p11-kit/pkcs11.h>
#include "scagent/scagent.h"

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const unsigned char digest[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
	17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };
static const unsigned char di256[] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48,
	0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };

enum { T_PKCS11, T_AGENT, T_SSH };

/* What to sign with, shared by the threads. */
struct target {
	int kind;
	const char *alg;
	/* pkcs11 */
	CK_FUNCTION_LIST_PTR f;
	CK_SLOT_ID slot;
	CK_OBJECT_HANDLE key;
	/* agent, ssh */
	const char *sock;
	const char *ref;
	unsigned char *blob;		/* ssh: the key blob */
	size_t bloblen;
	int rsa;
};

/* One thread's connection to a target. */
struct worker {
	const struct target *t;
	CK_SESSION_HANDLE s;
	CK_MECHANISM m;
	CK_RSA_PKCS_PSS_PARAMS pss;
	unsigned char in[64];
	CK_ULONG inlen;
	scagent_client *c;
	int fd;
	unsigned char *msg;
	size_t msglen;
};

/* ---- in-process PKCS#11 ---- */

static int
setup_pkcs11(struct target *t, const char *module, const char *token, const char *label)
{
	CK_C_GetFunctionList gfl;
	CK_C_INITIALIZE_ARGS ia = { NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL };
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64, got = 0;
	CK_SESSION_HANDLE s;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE a[2] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_LABEL, (void *)label, strlen(label) } };
	const char *pin = getenv("BENCH_PIN");
	void *dl = dlopen(module, RTLD_NOW);
	CK_RV rv;
	int found = 0;

	if (dl == NULL || (gfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList")) == NULL ||
	    gfl(&t->f) != CKR_OK || ((rv = t->f->C_Initialize(&ia)) != CKR_OK &&
	    rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) ||
	    t->f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK) {
		fprintf(stderr, "bench-sign: cannot load %s\n", module);
		return -1;
	}
	for (CK_ULONG i = 0; i < n && !found; i++) {
		CK_TOKEN_INFO ti;
		char lab[33];
		if (t->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		memcpy(lab, ti.label, 32);
		lab[32] = '\0';
		for (int k = 31; k >= 0 && lab[k] == ' '; k--)
			lab[k] = '\0';
		if (strcmp(lab, token) == 0) {
			t->slot = slots[i];
			found = 1;
		}
	}
	if (!found) {
		fprintf(stderr, "bench-sign: no token %s\n", token);
		return -1;
	}
	if (t->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
		return -1;
	if (pin != NULL)
		t->f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	if (t->f->C_FindObjectsInit(s, a, 2) != CKR_OK ||
	    t->f->C_FindObjects(s, &t->key, 1, &got) != CKR_OK || got != 1) {
		fprintf(stderr, "bench-sign: no private key %s\n", label);
		return -1;
	}
	t->f->C_FindObjectsFinal(s);
	/* The login session stays open: closing the last one would log out. */
	return 0;
}

static int
open_pkcs11(struct worker *w)
{
	const struct target *t = w->t;

	if (t->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, &w->s) != CKR_OK)
		return -1;
	w->m.mechanism = CKM_RSA_PKCS;
	if (strcmp(t->alg, "rsa-pkcs1-sha256") == 0) {
		memcpy(w->in, di256, sizeof(di256));
		memcpy(w->in + sizeof(di256), digest, 32);
		w->inlen = sizeof(di256) + 32;
		return 0;
	}
	memcpy(w->in, digest, 32);
	w->inlen = 32;
	if (strcmp(t->alg, "rsa-pss-sha256") == 0) {
		w->pss = (CK_RSA_PKCS_PSS_PARAMS){ CKM_SHA256, CKG_MGF1_SHA256, 32 };
		w->m.mechanism = CKM_RSA_PKCS_PSS;
		w->m.pParameter = &w->pss;
		w->m.ulParameterLen = sizeof(w->pss);
	} else
		w->m.mechanism = CKM_ECDSA;
	return 0;
}

static int
sign_pkcs11(struct worker *w)
{
	unsigned char out[1024];
	CK_ULONG outlen = sizeof(out);

	if (w->t->f->C_SignInit(w->s, &w->m, w->t->key) != CKR_OK ||
	    w->t->f->C_Sign(w->s, w->in, w->inlen, out, &outlen) != CKR_OK)
		return -1;
	return 0;
}

/* ---- through scagentd ---- */

static int
sign_agent(struct worker *w)
{
	unsigned char *sig;
	size_t siglen;

	if (scagent_sign(w->c, w->t->ref, w->t->alg, 1, digest, 32, &sig, &siglen) != 0) {
		fprintf(stderr, "bench-sign: %s\n", scagent_error(w->c));
		return -1;
	}
	scagent_free(sig);
	return 0;
}

/* ---- through ssh-agent (draft-miller-ssh-agent) ---- */

static int
ssh_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int
io_all(int fd, void *buf, size_t n, int wr)
{
	unsigned char *p = buf;

	while (n > 0) {
		ssize_t r = wr ? write(fd, p, n) : read(fd, p, n);
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Send one message, read the answer into *resp (malloc'd). */
static int
ssh_rpc(int fd, const unsigned char *msg, size_t len, unsigned char **resp, size_t *rlen)
{
	uint32_t n = htonl((uint32_t)len);

	if (io_all(fd, &n, 4, 1) < 0 || io_all(fd, (void *)msg, len, 1) < 0 || io_all(fd, &n, 4, 0) < 0)
		return -1;
	*rlen = ntohl(n);
	if (*rlen > 256 * 1024 || (*resp = malloc(*rlen)) == NULL)
		return -1;
	return io_all(fd, *resp, *rlen, 0);
}

static uint32_t
get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int
setup_ssh(struct target *t, const char *type)
{
	unsigned char req = 11, *resp = NULL;	/* SSH2_AGENTC_REQUEST_IDENTITIES */
	size_t rlen, off;
	uint32_t nkeys;
	int fd = ssh_connect(t->sock);

	t->rsa = strcmp(type, "rsa") == 0;
	if (fd < 0 || ssh_rpc(fd, &req, 1, &resp, &rlen) < 0 || rlen < 5 || resp[0] != 12) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	nkeys = get32(resp + 1);
	off = 5;
	for (uint32_t i = 0; i < nkeys && off + 4 <= rlen; i++) {
		uint32_t bl = get32(resp + off), tl, cl;
		const unsigned char *blob = resp + off + 4;
		if (off + 4 + bl + 4 > rlen)
			break;
		tl = get32(blob);
		if ((t->rsa && tl == 7 && memcmp(blob + 4, "ssh-rsa", 7) == 0) ||
		    (!t->rsa && tl >= 10 && memcmp(blob + 4, "ecdsa-sha2", 10) == 0)) {
			t->blob = malloc(bl);
			memcpy(t->blob, blob, bl);
			t->bloblen = bl;
			break;
		}
		off += 4 + bl;
		cl = get32(resp + off);
		off += 4 + cl;
	}
	free(resp);
	close(fd);
	return t->blob ? 0 : -1;
}

static int
open_ssh(struct worker *w)
{
	const struct target *t = w->t;
	size_t len = 0;
	uint32_t v;

	if ((w->msg = malloc(1 + 4 + t->bloblen + 4 + 32 + 4)) == NULL ||
	    (w->fd = ssh_connect(t->sock)) < 0)
		return -1;
	w->msg[len++] = 13;	/* SSH2_AGENTC_SIGN_REQUEST */
	v = htonl((uint32_t)t->bloblen);
	memcpy(w->msg + len, &v, 4);
	memcpy(w->msg + len + 4, t->blob, t->bloblen);
	len += 4 + t->bloblen;
	v = htonl(32);
	memcpy(w->msg + len, &v, 4);
	memcpy(w->msg + len + 4, digest, 32);
	len += 36;
	v = htonl(t->rsa ? 2 : 0);	/* SSH_AGENT_RSA_SHA2_256 */
	memcpy(w->msg + len, &v, 4);
	w->msglen = len + 4;
	return 0;
}

static int
sign_ssh(struct worker *w)
{
	unsigned char *resp;
	size_t rlen;
	int r = 0;

	if (ssh_rpc(w->fd, w->msg, w->msglen, &resp, &rlen) < 0)
		return -1;
	if (rlen < 1 || resp[0] != 14)
		r = -1;
	free(resp);
	return r;
}

/* ---- targets, workers and slices ---- */

/* Reads a TARGET from argv at *i; 0 or -1. */
static int
parse_target(int argc, char **argv, int *i, struct target *t)
{
	int n = argc - *i;
	const char *kind = n > 0 ? argv[*i] : "";

	memset(t, 0, sizeof(*t));
	if (strcmp(kind, "pkcs11") == 0 && n >= 5) {
		t->kind = T_PKCS11;
		t->alg = argv[*i + 4];
		if (setup_pkcs11(t, argv[*i + 1], argv[*i + 2], argv[*i + 3]) < 0)
			return -1;
		*i += 5;
		return 0;
	}
	if (strcmp(kind, "agent") == 0 && n >= 4) {
		t->kind = T_AGENT;
		t->sock = argv[*i + 1];
		t->ref = argv[*i + 2];
		t->alg = argv[*i + 3];
		*i += 4;
		return 0;
	}
	if (strcmp(kind, "ssh") == 0 && n >= 3) {
		t->kind = T_SSH;
		t->sock = argv[*i + 1];
		if (setup_ssh(t, argv[*i + 2]) < 0) {
			fprintf(stderr, "bench-sign: no %s key in ssh-agent\n", argv[*i + 2]);
			return -1;
		}
		*i += 3;
		return 0;
	}
	return -1;
}

/* "TARGET-A vs TARGET-B" from argv[i] to the end into t[0], t[1]; 0 or -1. */
static int
parse_two(int argc, char **argv, int i, struct target t[2])
{
	if (parse_target(argc, argv, &i, &t[0]) < 0 || i >= argc || strcmp(argv[i++], "vs") != 0 ||
	    parse_target(argc, argv, &i, &t[1]) < 0 || i != argc)
		return -1;
	return 0;
}

static int
worker_open(struct worker *w, const struct target *t)
{
	memset(w, 0, sizeof(*w));
	w->t = t;
	w->fd = -1;
	switch (t->kind) {
	case T_PKCS11:
		return open_pkcs11(w);
	case T_AGENT:
		return scagent_connect(t->sock, &w->c) == 0 ? 0 : -1;
	default:
		return open_ssh(w);
	}
}

static int
worker_sign(struct worker *w)
{
	switch (w->t->kind) {
	case T_PKCS11:
		return sign_pkcs11(w);
	case T_AGENT:
		return sign_agent(w);
	default:
		return sign_ssh(w);
	}
}

static void
worker_close(struct worker *w)
{
	if (w->t->kind == T_PKCS11)
		w->t->f->C_CloseSession(w->s);
	scagent_close(w->c);
	if (w->fd >= 0)
		close(w->fd);
	free(w->msg);
}

/*
 * The run: nslices slices; in slice k every thread signs with
 * targets[order[k]] until the slice's end, then all wait for each other. A
 * slice starts after each thread signed once with its target, uncounted (a
 * thread of the agent that slept through the other target's slice wakes up
 * then), and lasts until its last signature ends.
 */
struct run {
	const struct target *targets[2];
	int ntargets, nthreads, nslices;
	const int *order;
	double slice;			/* seconds */
	pthread_barrier_t gate;
	long ops[2];			/* per target */
	double secs[2];
	unsigned long long steal[2], ticks[2];	/* /proc/stat, all CPUs */
	int failed;
	pthread_mutex_t lock;
	int ncpus, cpus[64];		/* > 0: threads move between these CPUs */
	int next;			/* the next thread's index */
};

/*
 * With fewer client threads than CPUs, the agent signs on a CPU the client
 * leaves free, and the in-process baseline on the client's own: on a virtual
 * machine whose CPUs run at different speeds (measured here: one at times
 * 30% slower than the other, which one changing from second to second), a
 * ratio then measures the CPUs as much as the agent. So each thread moves to
 * the next CPU after each A B B A group of slices: both sides sign on every
 * CPU for the same share of their time.
 */
static void
run_cpus(struct run *r)
{
	cpu_set_t set;

	r->ncpus = 0;
	if (sched_getaffinity(0, sizeof(set), &set) != 0 || CPU_COUNT(&set) <= r->nthreads)
		return;
	for (int c = 0; c < CPU_SETSIZE && r->ncpus < 64; c++)
		if (CPU_ISSET(c, &set))
			r->cpus[r->ncpus++] = c;
}

static void
move_to_cpu(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void *
thread_main(void *arg)
{
	struct run *r = arg;
	struct worker w[2];
	int opened[2] = { 0, 0 }, bad = 0, me;

	pthread_mutex_lock(&r->lock);
	me = r->next++;
	pthread_mutex_unlock(&r->lock);
	for (int i = 0; i < r->ntargets; i++)
		if (!(opened[i] = worker_open(&w[i], r->targets[i]) == 0))
			bad = 1;
	for (int k = 0; k < r->nslices; k++) {
		struct worker *cur = &w[r->order[k]];
		double end;
		long ops = 0;

		if (r->ncpus > 0 && k % 4 == 0)
			move_to_cpu(r->cpus[(me + k / 4) % r->ncpus]);
		if (!bad && worker_sign(cur) != 0)
			bad = 1;
		pthread_barrier_wait(&r->gate);
		end = now() + r->slice;
		while (!bad && now() < end) {
			if (worker_sign(cur) != 0)
				bad = 1;
			else
				ops++;
		}
		pthread_mutex_lock(&r->lock);
		r->ops[r->order[k]] += ops;
		r->failed |= bad;
		pthread_mutex_unlock(&r->lock);
		pthread_barrier_wait(&r->gate);
	}
	for (int i = 0; i < r->ntargets; i++)
		if (opened[i])
			worker_close(&w[i]);
	return NULL;
}

/*
 * The host's steal time and all time of this machine's CPUs so far, in ticks
 * (/proc/stat's first line). A virtual CPU the host does not run stops its
 * thread: one client and the agent need two CPUs running where the in-process
 * baseline needs one, so steal hits the agent more.
 */
static void
read_steal(unsigned long long *steal, unsigned long long *ticks)
{
	unsigned long long v[8] = { 0 };
	FILE *f = fopen("/proc/stat", "r");

	*steal = *ticks = 0;
	if (f == NULL)
		return;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
	    &v[4], &v[5], &v[6], &v[7]) == 8) {
		*steal = v[7];
		for (int i = 0; i < 8; i++)
			*ticks += v[i];
	}
	fclose(f);
}

static int
run(struct run *r)
{
	pthread_t th[64];
	unsigned long long s0, j0, s1, j1;
	double t0;

	if (r->nthreads < 1 || r->nthreads > 64)
		return -1;
	pthread_barrier_init(&r->gate, NULL, (unsigned)r->nthreads + 1);
	pthread_mutex_init(&r->lock, NULL);
	if (r->ntargets == 2)
		run_cpus(r);
	for (int i = 0; i < r->nthreads; i++)
		pthread_create(&th[i], NULL, thread_main, r);
	for (int k = 0; k < r->nslices; k++) {
		pthread_barrier_wait(&r->gate);
		t0 = now();
		read_steal(&s0, &j0);
		pthread_barrier_wait(&r->gate);
		r->secs[r->order[k]] += now() - t0;
		read_steal(&s1, &j1);
		r->steal[r->order[k]] += s1 - s0;
		r->ticks[r->order[k]] += j1 - j0;
	}
	for (int i = 0; i < r->nthreads; i++)
		pthread_join(th[i], NULL);
	return r->failed ? -1 : 0;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
median(double *v, int count)
{
	qsort(v, (size_t)count, sizeof(double), cmp_double);
	return v[count / 2];
}

static void
print_lat(const char *name, double *t, int count, double *mean)
{
	double sum = 0;

	for (int i = 0; i < count; i++)
		sum += t[i];
	*mean = sum / count;
	qsort(t, (size_t)count, sizeof(double), cmp_double);
	printf("%-6s mean %8.1f  median %8.1f  p90 %8.1f  p99 %8.1f  max %8.1f us\n", name, *mean * 1e6,
	    t[count / 2] * 1e6, t[count * 9 / 10] * 1e6, t[count * 99 / 100] * 1e6, t[count - 1] * 1e6);
}

#define LAT_TURN 10

/* Signatures with A and B in turns, one at a time: the distribution of each one's time. */
static int
bench_lat(const struct target *ta, const struct target *tb, int count)
{
	struct worker w[2];
	double *t[2], t0, mean[2];
	int ok = count > 0 && worker_open(&w[0], ta) == 0;

	if (ok && worker_open(&w[1], tb) != 0) {
		worker_close(&w[0]);
		ok = 0;
	}
	if (!ok)
		return 1;
	t[0] = calloc((size_t)count, sizeof(double));
	t[1] = calloc((size_t)count, sizeof(double));
	ok = t[0] != NULL && t[1] != NULL && worker_sign(&w[0]) == 0 && worker_sign(&w[1]) == 0;
	for (int k = 0, n[2] = { 0, 0 }; ok && (n[0] < count || n[1] < count); k++) {
		int x = (k % 4 == 0 || k % 4 == 3) ? 0 : 1;	/* A B B A */

		if (n[x] < count)
			ok = worker_sign(&w[x]) == 0;
		for (int j = 0; ok && j < LAT_TURN && n[x] < count; j++) {
			t0 = now();
			ok = worker_sign(&w[x]) == 0;
			t[x][n[x]++] = now() - t0;
		}
	}
	if (ok) {
		print_lat("A", t[0], count, &mean[0]);
		print_lat("B", t[1], count, &mean[1]);
		printf("B - A: mean %+.1f us (B/A in signatures per second: %.4f)\n", (mean[1] - mean[0]) * 1e6,
		    mean[0] / mean[1]);
	}
	worker_close(&w[0]);
	worker_close(&w[1]);
	free(t[0]);
	free(t[1]);
	return ok ? 0 : 1;
}

/* The agent's floor: a request that does nothing (hello), socket and JSON both ways. */
static int
one_hello(scagent_client *c)
{
	char *res;

	if (scagent_call(c, "hello", "{\"version\":1}", &res) != 0)
		return -1;
	scagent_free(res);
	return 0;
}

/* A list from the agent's cache. */
static int
one_list(scagent_client *c)
{
	char *json;

	if (scagent_list(c, &json) != 0)
		return -1;
	scagent_free(json);
	return 0;
}

/* Prints the median time of count calls of one on a connection to sock, in us or ms. */
static int
bench_median(const char *sock, int count, int (*one)(scagent_client *), int in_ms)
{
	scagent_client *c = NULL;
	double *t = count > 0 ? calloc((size_t)count, sizeof(double)) : NULL, t0;
	int ok = t != NULL && scagent_connect(sock, &c) == 0;

	for (int i = 0; ok && i < count; i++) {
		t0 = now();
		ok = one(c) == 0;
		t[i] = now() - t0;
	}
	if (ok)
		printf(in_ms ? "%.3f\n" : "%.1f\n", median(t, count) * (in_ms ? 1e3 : 1e6));
	else
		fprintf(stderr, "bench-sign: %s\n", c != NULL ? scagent_error(c) :
		    count > 0 ? "cannot connect to the agent" : "COUNT must be at least 1");
	scagent_close(c);
	free(t);
	return ok ? 0 : 1;
}

/* What checking an RSA-2048 signature costs here, context set up once (as the agent keeps it). */
static int
bench_verify(int count)
{
	EVP_PKEY *pk = EVP_RSA_gen(2048);
	EVP_PKEY_CTX *sc = pk ? EVP_PKEY_CTX_new(pk, NULL) : NULL, *vc = pk ? EVP_PKEY_CTX_new(pk, NULL) : NULL;
	double *t = calloc((size_t)count, sizeof(double)), t0;
	unsigned char sig[512];
	size_t siglen = sizeof(sig);

	if (t == NULL || count <= 0 || sc == NULL || vc == NULL ||
	    EVP_PKEY_sign_init(sc) <= 0 || EVP_PKEY_CTX_set_rsa_padding(sc, RSA_PKCS1_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_signature_md(sc, EVP_sha256()) <= 0 ||
	    EVP_PKEY_sign(sc, sig, &siglen, digest, sizeof(digest)) <= 0 ||
	    EVP_PKEY_verify_init(vc) <= 0 || EVP_PKEY_CTX_set_rsa_padding(vc, RSA_PKCS1_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_signature_md(vc, EVP_sha256()) <= 0)
		return 1;
	for (int i = 0; i < count; i++) {
		t0 = now();
		if (EVP_PKEY_verify(vc, sig, siglen, digest, sizeof(digest)) != 1)
			return 1;
		t[i] = now() - t0;
	}
	printf("%.1f\n", median(t, count) * 1e6);
	EVP_PKEY_CTX_free(sc);
	EVP_PKEY_CTX_free(vc);
	EVP_PKEY_free(pk);
	free(t);
	return 0;
}

#define SLICE 0.1	/* seconds */

int
main(int argc, char **argv)
{
	struct target t[2];
	struct run r;
	int i = 1, order[2 * 1024];

	memset(&r, 0, sizeof(r));
	if (argc == 4 && strcmp(argv[1], "ping") == 0)
		return bench_median(argv[2], atoi(argv[3]), one_hello, 0);
	if (argc == 3 && strcmp(argv[1], "verify") == 0)
		return bench_verify(atoi(argv[2]));
	if (argc == 4 && strcmp(argv[1], "list") == 0)
		return bench_median(argv[2], atoi(argv[3]), one_list, 1);
	if (argc > 4 && strcmp(argv[1], "lat") == 0) {
		if (parse_two(argc, argv, 3, t) < 0 || atoi(argv[2]) < 1)
			goto usage;
		if (bench_lat(&t[0], &t[1], atoi(argv[2])) != 0)
			goto failed;
		return 0;
	}
	if (argc > 4 && strcmp(argv[1], "pair") == 0) {
		double secs = atof(argv[2]);
		int per = (int)(secs / SLICE + 0.5);

		if (parse_two(argc, argv, 4, t) < 0 || per < 1 || per > 1024)
			goto usage;
		/* A B B A A B B A ...: drift that is linear over four slices cancels. */
		for (int k = 0; k < 2 * per; k++)
			order[k] = (k % 4 == 0 || k % 4 == 3) ? 0 : 1;
		r = (struct run){ .targets = { &t[0], &t[1] }, .ntargets = 2, .nthreads = atoi(argv[3]),
		    .nslices = 2 * per, .order = order, .slice = SLICE };
		if (r.nthreads < 1 || r.nthreads > 64)
			goto usage;
		if (run(&r) < 0)
			goto failed;
		double a = (double)r.ops[0] / r.secs[0], b = (double)r.ops[1] / r.secs[1];
		printf("%.1f %.1f %.4f %.1f %.1f\n", a, b, a > 0 ? b / a : 0,
		    r.ticks[0] ? 100.0 * (double)r.steal[0] / (double)r.ticks[0] : 0,
		    r.ticks[1] ? 100.0 * (double)r.steal[1] / (double)r.ticks[1] : 0);
		return 0;
	}
	if (parse_target(argc, argv, &i, &t[0]) < 0 || i + 2 != argc)
		goto usage;
	order[0] = 0;
	r = (struct run){ .targets = { &t[0] }, .ntargets = 1, .nthreads = atoi(argv[i]), .nslices = 1,
	    .order = order, .slice = atof(argv[i + 1]) };
	if (r.nthreads < 1 || r.nthreads > 64 || !(r.slice > 0))
		goto usage;
	if (run(&r) < 0)
		goto failed;
	printf("%.1f %ld %.2f\n", (double)r.ops[0] / r.secs[0], r.ops[0], r.secs[0]);
	return 0;
usage:
	fprintf(stderr, "usage: see the comment at the top of bench/bench-sign.c (THREADS: 1-64)\n");
	return 2;
failed:
	fprintf(stderr, "bench-sign: a connection or a signature failed\n");
	return 1;
}
