/*
 * Issue 21 measurement: what does it cost, and what does the caller see when
 * the module crashes or hangs, to run a PKCS#11 module in a process of its own?
 * Three ways to sign with one key (C_SignInit + C_Sign, one thread):
 *
 *   direct   the module dlopen()ed in this process (today's scagentd)
 *   p11kit   p11-kit-client.so with P11_KIT_SERVER_ADDRESS="|p11-kit-remote MODULE"
 *            set while calling its C_GetFunctionList: each call of it makes an
 *            instance of its own that runs p11-kit-remote MODULE as a child at
 *            C_Initialize (p11-kit's RPC over a socketpair)
 *   json     this program re-executed as "worker": it loads the module, and
 *            answers one JSON line per request over a socketpair (json-c both
 *            ways, base64 data), the shape of a "scagentd --worker" helper
 *
 *   isolation-bench sign SECS ROUNDS REMOTE CLIENT_SO MODULE TOKEN KEY ALG
 *       ROUNDS lines "<direct/s> <p11kit/s> <json/s>"; the three take turns in
 *       slices of 100 ms (A B C C B A ...), SECS seconds each per round
 *   isolation-bench crash REMOTE CLIENT_SO CRASHMOD TOKEN KEY ALG
 *       what each design's caller sees when C_Sign segfaults or never returns
 *       (CRASHMOD, isolation-crashmod.so, forwards to $CRASHMOD_TARGET; $CRASHMOD_TRIGGER drives it)
 *   isolation-bench two REMOTE CLIENT_SO MODULE CRASHMOD TOKEN KEY ALG
 *       two p11kit instances in one process, one per module: one crashes,
 *       the other keeps signing
 *   isolation-bench worker MODULE TOKEN KEY ALG   (internal: the json worker)
 *
 * ALG is rsa (CKM_RSA_PKCS over a SHA-256 DigestInfo) or ec (CKM_ECDSA over 32
 * bytes). The PIN comes from $BENCH_PIN (default 123456).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

static const unsigned char tbs_rsa[51] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48,
	0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
	11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *
pin(void)
{
	const char *p = getenv("BENCH_PIN");

	return p != NULL ? p : "123456";
}

/* ------------------------------------------------------------ PKCS#11 side */

struct p11 {
	CK_FUNCTION_LIST_PTR f;
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE key;
	CK_MECHANISM_TYPE mech;
};

static CK_FUNCTION_LIST_PTR
load_direct(const char *module)
{
	CK_C_GetFunctionList gfl;
	CK_FUNCTION_LIST_PTR f;
	void *h = dlopen(module, RTLD_NOW | RTLD_LOCAL);

	if (h == NULL || (gfl = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList")) == NULL ||
	    gfl(&f) != CKR_OK)
		return NULL;
	return f;
}

/* An instance of p11-kit-client.so whose C_Initialize runs "REMOTE MODULE". */
static CK_FUNCTION_LIST_PTR
load_p11kit(const char *client_so, const char *remote, const char *module)
{
	CK_C_GetFunctionList gfl;
	CK_FUNCTION_LIST_PTR f = NULL;
	char addr[4096];
	void *h = dlopen(client_so, RTLD_NOW | RTLD_LOCAL);
	CK_RV rv;

	if (h == NULL || (gfl = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList")) == NULL)
		return NULL;
	snprintf(addr, sizeof addr, "|%s %s", remote, module);
	setenv("P11_KIT_SERVER_ADDRESS", addr, 1);
	rv = gfl(&f);
	unsetenv("P11_KIT_SERVER_ADDRESS");
	return rv == CKR_OK ? f : NULL;
}

/* C_Initialize, find TOKEN by label, open a session, log in, find KEY. */
static CK_RV
p11_open(struct p11 *p, CK_FUNCTION_LIST_PTR f, const char *token, const char *key, const char *alg)
{
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64, i, found = 0;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_LABEL, (void *)key, strlen(key) } };
	CK_TOKEN_INFO ti;
	CK_RV rv;

	p->f = f;
	p->mech = strcmp(alg, "ec") == 0 ? CKM_ECDSA : CKM_RSA_PKCS;
	if ((rv = f->C_Initialize(&args)) != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED)
		return rv;
	if ((rv = f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK)
		return rv;
	for (i = 0; i < n; i++) {
		if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
		    strncmp((char *)ti.label, token, strlen(token)) == 0 &&
		    (ti.label[strlen(token)] == ' ' || strlen(token) == 32))
			break;
	}
	if (i == n)
		return CKR_TOKEN_NOT_PRESENT;
	if ((rv = f->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &p->s)) != CKR_OK)
		return rv;
	rv = f->C_Login(p->s, CKU_USER, (CK_UTF8CHAR_PTR)pin(), strlen(pin()));
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
		return rv;
	if ((rv = f->C_FindObjectsInit(p->s, tmpl, 2)) != CKR_OK)
		return rv;
	rv = f->C_FindObjects(p->s, &p->key, 1, &found);
	f->C_FindObjectsFinal(p->s);
	if (rv == CKR_OK && found != 1)
		rv = CKR_KEY_HANDLE_INVALID;
	return rv;
}

static CK_RV
p11_sign(struct p11 *p, const unsigned char *in, size_t inlen, unsigned char *sig, CK_ULONG *siglen)
{
	CK_MECHANISM m = { p->mech, NULL, 0 };
	CK_RV rv;

	if ((rv = p->f->C_SignInit(p->s, &m, p->key)) != CKR_OK)
		return rv;
	return p->f->C_Sign(p->s, (CK_BYTE_PTR)in, inlen, sig, siglen);
}

static void
tbs(const struct p11 *p, const unsigned char **in, size_t *len)
{
	*in = tbs_rsa;
	*len = sizeof tbs_rsa;
	if (p->mech == CKM_ECDSA) {
		*in = tbs_rsa + 19;
		*len = 32;
	}
}

/* ------------------------------------------------------------- json worker */

static char *
b64(const unsigned char *in, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);

	if (out != NULL)
		EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	return out;
}

/* Decodes base64 into out (room for max); returns the length or -1. */
static int
unb64(const char *in, unsigned char *out, size_t max)
{
	size_t len = strlen(in);
	int n;

	if (len % 4 != 0 || len / 4 * 3 > max)
		return -1;
	n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
	if (n >= 0 && len > 0 && in[len - 1] == '=')
		n -= in[len - 2] == '=' ? 2 : 1;
	return n;
}

/* Reads one line from fd into buf (with a carry-over buffer); -1 on EOF/error,
 * -2 on timeout (ms < 0: wait forever). */
struct reader {
	int fd;
	char buf[65536];
	size_t have;
};

static int
read_line(struct reader *r, char *line, size_t max, int ms)
{
	for (;;) {
		char *nl = memchr(r->buf, '\n', r->have);
		struct pollfd pfd = { r->fd, POLLIN, 0 };
		ssize_t n;

		if (nl != NULL) {
			size_t len = (size_t)(nl - r->buf);

			if (len >= max)
				return -1;
			memcpy(line, r->buf, len);
			line[len] = '\0';
			r->have -= len + 1;
			memmove(r->buf, nl + 1, r->have);
			return (int)len;
		}
		if (poll(&pfd, 1, ms) == 0)
			return -2;
		n = read(r->fd, r->buf + r->have, sizeof r->buf - r->have);
		if (n <= 0)
			return -1;
		r->have += (size_t)n;
	}
}

static int
write_all(int fd, const char *s, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, s, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The worker: stdin/stdout is the socketpair. One JSON request per line:
 * {"op":"sign","id":N,"key":K,"alg":A,"data":B64} -> {"id":N,"ok":true,"signature":B64}.
 * It opens the token and finds the key once, as the agent's object set does. */
static int
worker(const char *module, const char *token, const char *key, const char *alg)
{
	static struct reader r = { .fd = 0 };
	static char line[65536];
	CK_FUNCTION_LIST_PTR f = load_direct(module);
	struct p11 p;
	CK_RV rv;

	if (f == NULL || (rv = p11_open(&p, f, token, key, alg)) != CKR_OK) {
		fprintf(stderr, "worker: cannot open %s on %s\n", key, module);
		return 1;
	}
	while (read_line(&r, line, sizeof line, -1) >= 0) {
		json_object *req = json_tokener_parse(line), *ans = json_object_new_object(), *v;
		unsigned char in[1024], sig[1024];
		CK_ULONG siglen = sizeof sig;
		const char *out;
		int inlen = -1;

		if (req != NULL && json_object_object_get_ex(req, "data", &v))
			inlen = unb64(json_object_get_string(v), in, sizeof in);
		if (req != NULL && json_object_object_get_ex(req, "id", &v))
			json_object_object_add(ans, "id", json_object_get(v));
		rv = inlen < 0 ? CKR_ARGUMENTS_BAD : p11_sign(&p, in, (size_t)inlen, sig, &siglen);
		json_object_object_add(ans, "ok", json_object_new_boolean(rv == CKR_OK));
		if (rv == CKR_OK) {
			char *s = b64(sig, siglen);

			json_object_object_add(ans, "signature", json_object_new_string(s));
			free(s);
		} else {
			json_object_object_add(ans, "error", json_object_new_string("device"));
		}
		out = json_object_to_json_string_ext(ans, JSON_C_TO_STRING_PLAIN);
		if (write_all(1, out, strlen(out)) < 0 || write_all(1, "\n", 1) < 0)
			return 1;
		json_object_put(req);
		json_object_put(ans);
	}
	return 0;
}

struct child {
	pid_t pid;
	struct reader r;
	unsigned id;
	const char *key, *alg;
};

static const char *self_exe;

static int
child_start(struct child *c, const char *module, const char *token, const char *key, const char *alg)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	fflush(stdout);
	c->pid = fork();
	if (c->pid == 0) {
		dup2(sv[1], 0);
		dup2(sv[1], 1);
		execl(self_exe, self_exe, "worker", module, token, key, alg, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	c->r.fd = sv[0];
	c->r.have = 0;
	c->key = key;
	c->alg = alg;
	return c->pid > 0 ? 0 : -1;
}

/* One signature through the worker: 0, -1 (worker gone: "device"), -2 (timeout). */
static int
child_sign(struct child *c, const unsigned char *in, size_t inlen, unsigned char *sig, size_t *siglen, int ms)
{
	static char line[65536];
	json_object *req = json_object_new_object(), *ans, *v;
	char *d = b64(in, inlen);
	const char *s;
	int r;

	json_object_object_add(req, "op", json_object_new_string("sign"));
	json_object_object_add(req, "id", json_object_new_int((int)++c->id));
	json_object_object_add(req, "key", json_object_new_string(c->key));
	json_object_object_add(req, "alg", json_object_new_string(c->alg));
	json_object_object_add(req, "data", json_object_new_string(d));
	free(d);
	s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	r = write_all(c->r.fd, s, strlen(s)) < 0 || write_all(c->r.fd, "\n", 1) < 0 ? -1 : 0;
	json_object_put(req);
	if (r < 0)
		return -1;
	if ((r = read_line(&c->r, line, sizeof line, ms)) < 0)
		return r;
	ans = json_tokener_parse(line);
	r = -1;
	if (ans != NULL && json_object_object_get_ex(ans, "signature", &v)) {
		int n = unb64(json_object_get_string(v), sig, *siglen);

		if (n > 0) {
			*siglen = (size_t)n;
			r = 0;
		}
	}
	json_object_put(ans);
	return r;
}

static int
child_stop(struct child *c, int sig)
{
	int st = 0;

	close(c->r.fd);
	if (sig)
		kill(c->pid, sig);
	waitpid(c->pid, &st, 0);
	return st;
}

/* ------------------------------------------------------------------ sign */

struct tgt {
	struct p11 *p;
	struct child *c;
	unsigned long ops;
	double t;
};

static int
sign_one(struct tgt *t)
{
	const unsigned char *in;
	unsigned char sig[1024];
	size_t len, sl = sizeof sig;
	CK_ULONG csl = sizeof sig;

	if (t->p != NULL) {
		tbs(t->p, &in, &len);
		return t->p->f != NULL && p11_sign(t->p, in, len, sig, &csl) == CKR_OK ? 0 : -1;
	}
	in = tbs_rsa;
	len = sizeof tbs_rsa;
	if (strcmp(t->c->alg, "ec") == 0) {
		in += 19;
		len = 32;
	}
	return child_sign(t->c, in, len, sig, &sl, 30000);
}

static int
slice(struct tgt *t, double secs)
{
	double t0 = now(), end = t0 + secs, x;

	do {
		if (sign_one(t) < 0)
			return -1;
		t->ops++;
	} while ((x = now()) < end);
	t->t += x - t0;
	return 0;
}

static int
cmd_sign(char **av)
{
	double secs = atof(av[0]);
	int rounds = atoi(av[1]), i;
	const char *remote = av[2], *client = av[3], *module = av[4], *token = av[5], *key = av[6], *alg = av[7];
	static struct p11 pd, pk;
	static struct child c;
	CK_FUNCTION_LIST_PTR fd = load_direct(module), fk = load_p11kit(client, remote, module);
	CK_RV rv;

	if (fd == NULL || fk == NULL) {
		fprintf(stderr, "cannot load %s directly or through %s\n", module, client);
		return 1;
	}
	if ((rv = p11_open(&pd, fd, token, key, alg)) != CKR_OK ||
	    (rv = p11_open(&pk, fk, token, key, alg)) != CKR_OK) {
		fprintf(stderr, "cannot open %s/%s: CKR 0x%lx\n", token, key, rv);
		return 1;
	}
	if (child_start(&c, module, token, key, alg) < 0)
		return 1;
	for (i = 0; i < rounds; i++) {
		struct tgt t[3] = { { &pd, NULL, 0, 0 }, { &pk, NULL, 0, 0 }, { NULL, &c, 0, 0 } };
		static const int order[6] = { 0, 1, 2, 2, 1, 0 };
		int k;

		for (k = 0; t[0].t < secs; k++) {
			if (slice(&t[order[k % 6]], 0.1) < 0) {
				fprintf(stderr, "signing failed (target %d)\n", order[k % 6]);
				return 1;
			}
		}
		printf("%.1f %.1f %.1f\n", t[0].ops / t[0].t, t[1].ops / t[1].t, t[2].ops / t[2].t);
		fflush(stdout);
	}
	child_stop(&c, 0);
	fk->C_Finalize(NULL);
	fd->C_Finalize(NULL);
	return 0;
}

/* ----------------------------------------------------------------- crash */

static void
trigger(const char *what)
{
	const char *path = getenv("CRASHMOD_TRIGGER");
	FILE *f;

	if (what == NULL) {
		unlink(path);
		return;
	}
	f = fopen(path, "w");
	fputs(what, f);
	fclose(f);
}

/* The pid of our child running p11-kit-remote (p11-kit does not tell). */
static pid_t
remote_child(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;

	while (d != NULL && (e = readdir(d)) != NULL) {
		char path[300], buf[512], comm[64];
		int pid, ppid;
		FILE *f;

		snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		if (fgets(buf, sizeof buf, f) != NULL && sscanf(buf, "%d (%63[^)]) %*c %d", &pid, comm, &ppid) == 3 &&
		    ppid == getpid() && strncmp(comm, "p11-kit-remote", 14) == 0)
			found = pid;
		fclose(f);
	}
	if (d != NULL)
		closedir(d);
	return found;
}

struct call {
	struct p11 *p;
	CK_RV rv;
	volatile int done;
	double t;
};

static void *
call_thread(void *arg)
{
	struct call *c = arg;
	const unsigned char *in;
	unsigned char sig[1024];
	CK_ULONG sl = sizeof sig;
	size_t len;
	double t0 = now();

	tbs(c->p, &in, &len);
	c->rv = p11_sign(c->p, in, len, sig, &sl);
	c->t = now() - t0;
	c->done = 1;
	return NULL;
}

static void
describe(const char *what, int st)
{
	if (WIFSIGNALED(st))
		printf("%s: killed by signal %d\n", what, WTERMSIG(st));
	else
		printf("%s: exited with status %d\n", what, WEXITSTATUS(st));
}

static int
cmd_crash(char **av)
{
	const char *remote = av[0], *client = av[1], *crashmod = av[2], *token = av[3], *key = av[4], *alg = av[5];
	static struct p11 pk;
	static struct child c;
	CK_FUNCTION_LIST_PTR fk;
	const unsigned char *in;
	unsigned char sig[1024];
	CK_ULONG sl = sizeof sig;
	size_t len, ssl;
	pthread_t th;
	struct call call = { &pk, 0, 0, 0 };
	double t0, t1;
	pid_t pid, agent;
	int st, r;
	CK_RV rv;

	trigger(NULL);
	/* direct: the module's crash is the agent's crash */
	fflush(stdout);
	agent = fork();
	if (agent == 0) {
		struct p11 pd;

		if (p11_open(&pd, load_direct(crashmod), token, key, alg) != CKR_OK)
			_exit(3);
		trigger("s");
		tbs(&pd, &in, &len);
		p11_sign(&pd, in, len, sig, &sl);
		_exit(0);
	}
	waitpid(agent, &st, 0);
	describe("direct, C_Sign segfaults: the agent process", st);
	trigger(NULL);

	/* p11kit: segfault */
	fk = load_p11kit(client, remote, crashmod);
	if (fk == NULL || (rv = p11_open(&pk, fk, token, key, alg)) != CKR_OK) {
		fprintf(stderr, "p11kit: cannot open the token through %s\n", crashmod);
		return 1;
	}
	tbs(&pk, &in, &len);
	trigger("s");
	t0 = now();
	rv = p11_sign(&pk, in, len, sig, &sl);
	printf("p11kit, C_Sign segfaults: C_Sign returns CKR 0x%lx after %.1f ms\n", rv, (now() - t0) * 1e3);
	trigger(NULL);
	sl = sizeof sig;
	rv = p11_sign(&pk, in, len, sig, &sl);
	printf("p11kit, next C_SignInit/C_Sign (module fine again): CKR 0x%lx\n", rv);
	rv = fk->C_GetSlotList(CK_TRUE, NULL, &sl);
	printf("p11kit, then C_GetSlotList: CKR 0x%lx\n", rv);
	t0 = now();
	rv = fk->C_Finalize(NULL);
	t1 = now();
	printf("p11kit, C_Finalize: CKR 0x%lx in %.1f ms\n", rv, (t1 - t0) * 1e3);
	rv = p11_open(&pk, fk, token, key, alg);
	sl = sizeof sig;
	if (rv == CKR_OK)
		rv = p11_sign(&pk, in, len, sig, &sl);
	printf("p11kit, C_Initialize + session + C_Login + find key + sign: CKR 0x%lx in %.1f ms (new child pid %d)\n",
	       rv, (now() - t1) * 1e3, (int)remote_child());

	/* p11kit: hang */
	trigger("h");
	pthread_create(&th, NULL, call_thread, &call);
	sleep(2);
	printf("p11kit, C_Sign never returns: after 2 s the call is %s (p11-kit has no call timeout)\n",
	       call.done ? "done" : "still blocked");
	pid = remote_child();
	t0 = now();
	kill(pid, SIGKILL);
	while (!call.done && now() - t0 < 10)
		usleep(1000);
	printf("p11kit, after SIGKILL of its child (pid %d, found in /proc): C_Sign returns CKR 0x%lx %.1f ms later\n",
	       (int)pid, call.rv, (now() - t0) * 1e3);
	pthread_join(th, NULL);
	trigger(NULL);
	t0 = now();
	fk->C_Finalize(NULL);
	printf("p11kit, C_Finalize after that: %.1f ms\n", (now() - t0) * 1e3);

	/* p11kit: C_Finalize from another thread while a call hangs (a timeout's
	 * restart through p11-kit's own API), in a process of its own in case it
	 * never returns */
	fflush(stdout);
	agent = fork();
	if (agent == 0) {
		struct call c2 = { &pk, 0, 0, 0 };
		pthread_t t2;

		setpgid(0, 0);
		if (p11_open(&pk, fk, token, key, alg) != CKR_OK)
			_exit(3);
		trigger("h");
		pthread_create(&t2, NULL, call_thread, &c2);
		usleep(500000);
		t0 = now();
		rv = fk->C_Finalize(NULL);
		printf("p11kit, C_Finalize while C_Sign hangs in another thread: CKR 0x%lx after %.0f ms; "
		       "the hung C_Sign %s", rv, (now() - t0) * 1e3, c2.done ? "returned" : "is still blocked");
		if (c2.done)
			printf(" (CKR 0x%lx)", c2.rv);
		printf("\n");
		fflush(stdout);
		_exit(0);
	}
	for (t0 = now(); waitpid(agent, &st, WNOHANG) == 0; usleep(10000)) {
		if (now() - t0 > 15) {
			printf("p11kit, C_Finalize while C_Sign hangs in another thread: no return within 15 s\n");
			kill(-agent, SIGKILL);
			waitpid(agent, &st, 0);
			break;
		}
	}
	trigger(NULL);

	/* p11kit: the process ends while a call hangs: exit() (atexit handlers and
	 * destructors run, p11-kit's among them) or _exit() */
	for (int how = 0; how < 2; how++) {
		fflush(stdout);
		agent = fork();
		if (agent == 0) {
			struct call c2 = { &pk, 0, 0, 0 };
			pthread_t t2;

			setpgid(0, 0);
			if (p11_open(&pk, fk, token, key, alg) != CKR_OK)
				_exit(3);
			trigger("h");
			pthread_create(&t2, NULL, call_thread, &c2);
			usleep(300000);
			if (how == 0)
				exit(0);
			_exit(0);
		}
		usleep(600000);
		t0 = now();
		waitpid(agent, &st, 0);
		t1 = now();
		usleep(100000);
		printf("p11kit, %s while a call hangs: the process ends %.0f ms after it (+/- 300 ms); "
		       "its p11-kit-remote child is %s\n", how == 0 ? "exit()" : "_exit()", (t1 - t0 + 0.3) * 1e3,
		       kill(-agent, 0) == 0 ? "LEFT BEHIND, hung" : "gone");
		kill(-agent, SIGKILL);
		trigger(NULL);
	}

	/* json worker: segfault, restart */
	if (child_start(&c, crashmod, token, key, alg) < 0)
		return 1;
	ssl = sizeof sig;
	if (child_sign(&c, in, len, sig, &ssl, 5000) != 0) {
		fprintf(stderr, "json: first signature failed\n");
		return 1;
	}
	trigger("s");
	t0 = now();
	ssl = sizeof sig;
	r = child_sign(&c, in, len, sig, &ssl, 5000);
	t1 = now();
	st = child_stop(&c, 0);
	printf("json, C_Sign segfaults: the request fails (%s) after %.1f ms; ", r == -1 ? "EOF: device" : "?",
	       (t1 - t0) * 1e3);
	describe("worker", st);
	trigger(NULL);
	t0 = now();
	child_start(&c, crashmod, token, key, alg);
	ssl = sizeof sig;
	r = child_sign(&c, in, len, sig, &ssl, 5000);
	printf("json, restart (exec, C_Initialize, C_Login, find key) + sign: %s in %.1f ms\n", r == 0 ? "ok" : "FAILED",
	       (now() - t0) * 1e3);

	/* json worker: hang, timeout, kill */
	trigger("h");
	t0 = now();
	ssl = sizeof sig;
	r = child_sign(&c, in, len, sig, &ssl, 1000);
	t1 = now();
	st = child_stop(&c, SIGKILL);
	printf("json, C_Sign never returns: the request fails (%s) after %.0f ms (the agent's own limit, 1 s here); "
	       "worker killed and reaped in %.1f ms\n", r == -2 ? "timeout" : "?", (t1 - t0) * 1e3, (now() - t1) * 1e3);
	trigger(NULL);
	return 0;
}

/* Two p11kit instances in one process, one per module. */
static int
cmd_two(char **av)
{
	const char *remote = av[0], *client = av[1], *module = av[2], *crashmod = av[3], *token = av[4],
		   *key = av[5], *alg = av[6];
	static struct p11 a, b;
	CK_FUNCTION_LIST_PTR fa = load_p11kit(client, remote, module), fb = load_p11kit(client, remote, crashmod);
	const unsigned char *in;
	unsigned char sig[1024];
	CK_ULONG sl = sizeof sig;
	size_t len;
	CK_RV ra, rb;
	char cmd[128];

	if (fa == NULL || fb == NULL || fa == fb || p11_open(&a, fa, token, key, alg) != CKR_OK ||
	    p11_open(&b, fb, token, key, alg) != CKR_OK) {
		fprintf(stderr, "two: cannot open both instances\n");
		return 1;
	}
	printf("two: function lists %p and %p; children:\n", (void *)fa, (void *)fb);
	fflush(stdout);
	snprintf(cmd, sizeof cmd, "ps -o pid=,args= --ppid %d | sed 's/^/  /'", (int)getpid());
	if (system(cmd) != 0)
		return 1;
	tbs(&a, &in, &len);
	trigger("s");
	rb = p11_sign(&b, in, len, sig, &sl);
	sl = sizeof sig;
	ra = p11_sign(&a, in, len, sig, &sl);
	trigger(NULL);
	printf("two: the crashing module's instance: CKR 0x%lx; the other one, just after: CKR 0x%lx\n", rb, ra);
	fa->C_Finalize(NULL);
	fb->C_Finalize(NULL);
	return 0;
}

int
main(int argc, char **argv)
{
	self_exe = "/proc/self/exe";
	signal(SIGPIPE, SIG_IGN);
	if (argc == 6 && strcmp(argv[1], "worker") == 0)
		return worker(argv[2], argv[3], argv[4], argv[5]);
	self_exe = realpath("/proc/self/exe", NULL);
	if (argc == 10 && strcmp(argv[1], "sign") == 0)
		return cmd_sign(argv + 2);
	if (argc == 8 && strcmp(argv[1], "crash") == 0)
		return cmd_crash(argv + 2);
	if (argc == 9 && strcmp(argv[1], "two") == 0)
		return cmd_two(argv + 2);
	fprintf(stderr, "usage: see the comment at the top of isolation-bench.c\n");
	return 2;
}
