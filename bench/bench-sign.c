/*
 * Signature throughput: in-process PKCS#11 (any module: SoftHSM directly, or
 * p11-kit-client.so for `p11-kit server`), through scagentd, and through
 * ssh-agent. One line of output per run: "<ops/s> <ops> <seconds>".
 *
 *   bench-sign pkcs11 MODULE TOKEN KEYLABEL ALG THREADS SECONDS   (PIN in $BENCH_PIN)
 *   bench-sign agent SOCKET REF ALG CLIENTS SECONDS
 *   bench-sign ssh SOCKET rsa|ecdsa THREADS SECONDS
 *   bench-sign list SOCKET COUNT      (prints the median list time in ms)
 *   bench-sign ping SOCKET COUNT      (median round trip of an empty request, us)
 *   bench-sign verify COUNT           (median RSA-2048 PKCS#1 verification, us:
 *                                      what the agent adds to every RSA signature)
 */
#include "config.h"
#include <arpa/inet.h>
#include <dlfcn.h>
#include <pthread.h>
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

struct job {
	int mode;			/* 0 pkcs11, 1 agent, 2 ssh */
	double seconds;
	long ops;
	int failed;
	/* pkcs11 */
	CK_FUNCTION_LIST_PTR f;
	CK_SLOT_ID slot;
	CK_OBJECT_HANDLE key;
	const char *alg;
	/* agent / ssh */
	const char *sock;
	const char *ref;
	unsigned char *blob;
	size_t bloblen;
	int rsa;
};

static pthread_barrier_t start;

/* ---- in-process PKCS#11 ---- */

static void *
run_pkcs11(void *arg)
{
	struct job *j = arg;
	CK_SESSION_HANDLE s;
	CK_RSA_PKCS_PSS_PARAMS pss = { CKM_SHA256, CKG_MGF1_SHA256, 32 };
	CK_MECHANISM m = { CKM_RSA_PKCS, NULL, 0 };
	unsigned char in[64], out[1024];
	CK_ULONG inlen, outlen;
	double end;

	if (j->f->C_OpenSession(j->slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK) {
		j->failed = 1;
		pthread_barrier_wait(&start);
		return NULL;
	}
	if (strcmp(j->alg, "rsa-pkcs1-sha256") == 0) {
		memcpy(in, di256, sizeof(di256));
		memcpy(in + sizeof(di256), digest, 32);
		inlen = sizeof(di256) + 32;
	} else {
		memcpy(in, digest, 32);
		inlen = 32;
		if (strcmp(j->alg, "rsa-pss-sha256") == 0) {
			m.mechanism = CKM_RSA_PKCS_PSS;
			m.pParameter = &pss;
			m.ulParameterLen = sizeof(pss);
		} else
			m.mechanism = CKM_ECDSA;
	}
	pthread_barrier_wait(&start);
	end = now() + j->seconds;
	while (now() < end) {
		outlen = sizeof(out);
		if (j->f->C_SignInit(s, &m, j->key) != CKR_OK ||
		    j->f->C_Sign(s, in, inlen, out, &outlen) != CKR_OK) {
			j->failed = 1;
			break;
		}
		j->ops++;
	}
	j->f->C_CloseSession(s);
	return NULL;
}

static int
setup_pkcs11(struct job *j, const char *module, const char *token, const char *label)
{
	CK_C_GetFunctionList gfl;
	CK_C_INITIALIZE_ARGS ia = { NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL };
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64, got = 0;
	CK_SESSION_HANDLE s;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[2] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_LABEL, (void *)label, strlen(label) } };
	const char *pin = getenv("BENCH_PIN");
	void *dl = dlopen(module, RTLD_NOW);

	if (dl == NULL || (gfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList")) == NULL ||
	    gfl(&j->f) != CKR_OK || j->f->C_Initialize(&ia) != CKR_OK ||
	    j->f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK) {
		fprintf(stderr, "bench-sign: cannot load %s\n", module);
		return -1;
	}
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;
		char lab[33];
		if (j->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		memcpy(lab, ti.label, 32);
		lab[32] = '\0';
		for (int k = 31; k >= 0 && lab[k] == ' '; k--)
			lab[k] = '\0';
		if (strcmp(lab, token) == 0) {
			j->slot = slots[i];
			break;
		}
		if (i + 1 == n) {
			fprintf(stderr, "bench-sign: no token %s\n", token);
			return -1;
		}
	}
	if (j->f->C_OpenSession(j->slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
		return -1;
	if (pin != NULL)
		j->f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	if (j->f->C_FindObjectsInit(s, t, 2) != CKR_OK ||
	    j->f->C_FindObjects(s, &j->key, 1, &got) != CKR_OK || got != 1) {
		fprintf(stderr, "bench-sign: no private key %s\n", label);
		return -1;
	}
	j->f->C_FindObjectsFinal(s);
	/* The login session stays open: closing the last one would log out. */
	return 0;
}

/* ---- through scagentd ---- */

static void *
run_agent(void *arg)
{
	struct job *j = arg;
	scagent_client *c = NULL;
	unsigned char *sig;
	size_t siglen;
	double end;

	if (scagent_connect(j->sock, &c) != 0)
		j->failed = 1;
	pthread_barrier_wait(&start);
	if (c == NULL)
		return NULL;
	end = now() + j->seconds;
	while (now() < end) {
		if (scagent_sign(c, j->ref, j->alg, 1, digest, 32, &sig, &siglen) != 0) {
			fprintf(stderr, "bench-sign: %s\n", scagent_error(c));
			j->failed = 1;
			break;
		}
		scagent_free(sig);
		j->ops++;
	}
	scagent_close(c);
	return NULL;
}

/* ---- through ssh-agent (draft-miller-ssh-agent) ---- */

static int
ssh_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -1;
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
setup_ssh(struct job *j, const char *type)
{
	unsigned char req = 11, *resp = NULL;	/* SSH2_AGENTC_REQUEST_IDENTITIES */
	size_t rlen, off;
	uint32_t nkeys;
	int fd = ssh_connect(j->sock);

	j->rsa = strcmp(type, "rsa") == 0;
	if (fd < 0 || ssh_rpc(fd, &req, 1, &resp, &rlen) < 0 || rlen < 5 || resp[0] != 12)
		return -1;
	nkeys = get32(resp + 1);
	off = 5;
	for (uint32_t i = 0; i < nkeys && off + 4 <= rlen; i++) {
		uint32_t bl = get32(resp + off), tl, cl;
		const unsigned char *blob = resp + off + 4;
		if (off + 4 + bl + 4 > rlen)
			break;
		tl = get32(blob);
		if ((j->rsa && tl == 7 && memcmp(blob + 4, "ssh-rsa", 7) == 0) ||
		    (!j->rsa && tl >= 10 && memcmp(blob + 4, "ecdsa-sha2", 10) == 0)) {
			j->blob = malloc(bl);
			memcpy(j->blob, blob, bl);
			j->bloblen = bl;
			break;
		}
		off += 4 + bl;
		cl = get32(resp + off);
		off += 4 + cl;
	}
	free(resp);
	close(fd);
	return j->blob ? 0 : -1;
}

static void *
run_ssh(void *arg)
{
	struct job *j = arg;
	unsigned char *msg = malloc(1 + 4 + j->bloblen + 4 + 32 + 4), *resp;
	size_t len = 0, rlen;
	uint32_t v;
	double end;
	int fd = ssh_connect(j->sock);

	msg[len++] = 13;	/* SSH2_AGENTC_SIGN_REQUEST */
	v = htonl((uint32_t)j->bloblen);
	memcpy(msg + len, &v, 4);
	memcpy(msg + len + 4, j->blob, j->bloblen);
	len += 4 + j->bloblen;
	v = htonl(32);
	memcpy(msg + len, &v, 4);
	memcpy(msg + len + 4, digest, 32);
	len += 36;
	v = htonl(j->rsa ? 2 : 0);	/* SSH_AGENT_RSA_SHA2_256 */
	memcpy(msg + len, &v, 4);
	len += 4;
	if (fd < 0)
		j->failed = 1;
	pthread_barrier_wait(&start);
	end = now() + j->seconds;
	while (fd >= 0 && now() < end) {
		if (ssh_rpc(fd, msg, len, &resp, &rlen) < 0 || rlen < 1 || resp[0] != 14) {
			j->failed = 1;
			break;
		}
		free(resp);
		j->ops++;
	}
	if (fd >= 0)
		close(fd);
	free(msg);
	return NULL;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
median_us(double *v, int count)
{
	qsort(v, (size_t)count, sizeof(double), cmp_double);
	return v[count / 2] * 1e6;
}

/* The agent's floor: a request that does nothing (hello), socket and JSON both ways. */
static int
bench_ping(const char *sock, int count)
{
	scagent_client *c;
	double *t = calloc((size_t)count, sizeof(double)), t0;
	char *res;

	if (t == NULL || count <= 0 || scagent_connect(sock, &c) != 0)
		return 1;
	for (int i = 0; i < count; i++) {
		t0 = now();
		if (scagent_call(c, "hello", "{\"version\":1}", &res) != 0)
			return 1;
		t[i] = now() - t0;
		scagent_free(res);
	}
	printf("%.1f\n", median_us(t, count));
	scagent_close(c);
	free(t);
	return 0;
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
	printf("%.1f\n", median_us(t, count));
	EVP_PKEY_CTX_free(sc);
	EVP_PKEY_CTX_free(vc);
	EVP_PKEY_free(pk);
	free(t);
	return 0;
}

int
main(int argc, char **argv)
{
	struct job proto, *jobs;
	pthread_t *th;
	int n;
	double t0, t1;
	long total = 0;

	memset(&proto, 0, sizeof(proto));
	if (argc == 4 && strcmp(argv[1], "ping") == 0)
		return bench_ping(argv[2], atoi(argv[3]));
	if (argc == 3 && strcmp(argv[1], "verify") == 0)
		return bench_verify(atoi(argv[2]));
	if (argc == 4 && strcmp(argv[1], "list") == 0) {
		scagent_client *c;
		int count = atoi(argv[3]);
		double *ms = calloc((size_t)count, sizeof(double));
		char *json;
		if (scagent_connect(argv[2], &c) != 0)
			return 1;
		for (int i = 0; i < count; i++) {
			t0 = now();
			if (scagent_list(c, &json) != 0)
				return 1;
			ms[i] = (now() - t0) * 1000;
			scagent_free(json);
		}
		qsort(ms, (size_t)count, sizeof(double), cmp_double);
		printf("%.3f\n", ms[count / 2]);
		return 0;
	}
	if (argc == 8 && strcmp(argv[1], "pkcs11") == 0) {
		proto.mode = 0;
		proto.alg = argv[5];
		n = atoi(argv[6]);
		proto.seconds = atof(argv[7]);
		if (setup_pkcs11(&proto, argv[2], argv[3], argv[4]) < 0)
			return 1;
	} else if (argc == 7 && strcmp(argv[1], "agent") == 0) {
		proto.mode = 1;
		proto.sock = argv[2];
		proto.ref = argv[3];
		proto.alg = argv[4];
		n = atoi(argv[5]);
		proto.seconds = atof(argv[6]);
	} else if (argc == 6 && strcmp(argv[1], "ssh") == 0) {
		proto.mode = 2;
		proto.sock = argv[2];
		n = atoi(argv[4]);
		proto.seconds = atof(argv[5]);
		if (setup_ssh(&proto, argv[3]) < 0) {
			fprintf(stderr, "bench-sign: no %s key in ssh-agent\n", argv[3]);
			return 1;
		}
	} else {
		fprintf(stderr, "usage: see the comment at the top of bench/bench-sign.c\n");
		return 2;
	}
	if (n < 1 || n > 64)
		return 2;
	jobs = calloc((size_t)n, sizeof(*jobs));
	th = calloc((size_t)n, sizeof(*th));
	pthread_barrier_init(&start, NULL, (unsigned)n + 1);
	for (int i = 0; i < n; i++) {
		jobs[i] = proto;
		pthread_create(&th[i], NULL, proto.mode == 0 ? run_pkcs11 : proto.mode == 1 ? run_agent : run_ssh,
		    &jobs[i]);
	}
	pthread_barrier_wait(&start);
	t0 = now();
	for (int i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		if (jobs[i].failed)
			return 1;
		total += jobs[i].ops;
	}
	t1 = now();
	printf("%.1f %ld %.2f\n", (double)total / (t1 - t0), total, t1 - t0);
	return 0;
}
