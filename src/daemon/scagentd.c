/* scagentd: the smart card agent. Owns the cards; every other program asks it. */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "common/conf.h"
#include "common/err.h"
#include "common/log.h"
#include "daemon/server.h"
#include "scagent/scagent.h"
#include "token/token.h"

static struct sc_server *g_srv;
static volatile sig_atomic_t g_stop;	/* a signal came before the server ran */

static void
on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
	if (g_srv != NULL)
		sc_server_stop(g_srv);
}

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: scagentd [--foreground] [--socket PATH] [--config FILE] [--module PATH]...\n"
	    "                [--log-level error|warn|info|debug] [--syslog] [--idle-timeout SEC]\n"
	    "                [--pinentry PROGRAM] [--audit-log FILE|syslog] [--vsc-module PATH]\n"
	    "                [--request-timeout SEC] [--max-clients N]\n"
	    "                [--module-timeout SEC] [--keygen-timeout SEC]\n"
	    "\n"
	    "Runs each configured PKCS#11 module (or exactly the --module ones) in a worker\n"
	    "process of its own and serves their tokens on a Unix socket, by default\n"
	    "$XDG_RUNTIME_DIR/scagent/agent.sock. A worker that crashes is restarted; one\n"
	    "that does not answer within --module-timeout (default 30 s; keygen, import and\n"
	    "TPM card creation: --keygen-timeout, default 300 s) is killed and restarted.\n"
	    "Without --foreground it detaches and prints the SCAGENT_SOCKET to export.\n"
	    "--vsc-module loads the module that holds TPM virtual smart cards (default:\n"
	    "the loaded module that is tpm2-pkcs11; scagent.conf: vsc-module).\n"
	    "--max-clients: connections served at once (default 256); one more is told\n"
	    "the agent is busy. A connection must say hello within 5 s.\n");
}

/* A decimal option argument from min to max into *out; -1 when it is not one. */
static int
number_arg(const char *arg, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (*arg < '0' || *arg > '9')
		return -1;
	errno = 0;
	v = strtoul(arg, &end, 10);
	if (*end != '\0' || errno != 0 || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* TPM2_PKCS11_STORE for tpm2-pkcs11, with a leading "~/" taken as $HOME. */
static void
export_store(const char *store)
{
	const char *home = getenv("HOME");
	char *s = NULL;

	if (strncmp(store, "~/", 2) == 0 && home != NULL && asprintf(&s, "%s/%s", home, store + 2) > 0) {
		setenv("TPM2_PKCS11_STORE", s, 1);
		free(s);
	} else
		setenv("TPM2_PKCS11_STORE", store, 1);
}

static void
harden(void)
{
	struct rlimit rl = { 0, 0 };

	if (setrlimit(RLIMIT_CORE, &rl) < 0)
		sc_warn("cannot disable core dumps: %s", strerror(errno));
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		sc_warn("cannot make the agent non-dumpable: %s", strerror(errno));
}

/*
 * The socket's directory. The default one ($XDG_RUNTIME_DIR/scagent) is ours:
 * created 0700, owned by us, made private if it is not. A directory the user
 * chose with --socket or $SCAGENT_SOCKET is created 0700 when missing, and
 * left as it is when it exists (the socket itself is 0600 and every peer is
 * checked): chmod'ing, say, /tmp would break the system.
 */
static int
make_socket_dir(const char *sock, int own_dir)
{
	char dir[PATH_MAX], *slash;
	struct stat sb;

	if (strlen(sock) >= sizeof(dir))
		return -1;
	strcpy(dir, sock);
	if ((slash = strrchr(dir, '/')) == NULL || slash == dir)
		return 0;
	*slash = '\0';
	if (!own_dir && stat(dir, &sb) == 0) {
		if (!S_ISDIR(sb.st_mode)) {
			sc_error("%s is not a directory", dir);
			return -1;
		}
		return 0;	/* the user's directory: its mode is theirs */
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		sc_error("cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		sc_error("%s is not a directory", dir);
		return -1;
	}
	if (sb.st_uid != getuid()) {
		sc_error("%s belongs to another user: choose another --socket", dir);
		return -1;
	}
	if ((sb.st_mode & 077) != 0 && chmod(dir, 0700) < 0) {
		sc_error("cannot make %s private: %s", dir, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * What is at the socket's path before bind(): nothing, or a stale socket
 * (nobody accepts on it: an agent killed with SIGKILL), which is removed. A
 * live agent's socket, or anything that is not a socket (a file the user
 * named by mistake, a symbolic link), is left alone and refused, as
 * ssh-agent does.
 */
static int
clear_stale_socket(const char *path, const struct sockaddr_un *sa)
{
	struct stat sb;
	int probe, r, e;

	if (lstat(path, &sb) < 0) {
		if (errno == ENOENT)
			return 0;
		sc_error("cannot use %s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(sb.st_mode)) {
		sc_error("%s exists and is not a socket: remove it or choose another --socket", path);
		return -1;
	}
	if ((probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
		sc_error("socket: %s", strerror(errno));
		return -1;
	}
	r = connect(probe, (const struct sockaddr *)sa, sizeof(*sa));
	e = errno;
	close(probe);
	if (r == 0 || e == EAGAIN) {
		/* EAGAIN: its listen queue is full, so something does listen there. */
		sc_error("an agent is already running on %s; stop it first or use --socket", path);
		return -1;
	}
	if (e != ECONNREFUSED) {
		sc_error("cannot tell whether %s is in use: %s", path, strerror(e));
		return -1;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		sc_error("cannot remove the stale socket %s: %s", path, strerror(errno));
		return -1;
	}
	sc_info("removed the stale socket %s (no agent answers on it)", path);
	return 0;
}

static int
listen_socket(const char *path, int own_dir)
{
	struct sockaddr_un sa;
	mode_t old;
	int fd;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		sc_error("socket path too long (%zu bytes, the limit is %zu): %s", strlen(path),
		    sizeof(sa.sun_path) - 1, path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	if (make_socket_dir(path, own_dir) < 0)
		return -1;
	if (clear_stale_socket(path, &sa) < 0)
		return -1;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		sc_error("socket: %s", strerror(errno));
		return -1;
	}
	old = umask(0177);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		umask(old);
		sc_error("cannot bind %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	umask(old);
	if (listen(fd, 64) < 0) {
		sc_error("listen: %s", strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	return fd;
}

/*
 * systemd socket activation: LISTEN_PID/LISTEN_FDS, the socket is fd 3.
 * Returns 3, -1 when not activated, -2 when fd 3 is not a listening Unix
 * stream socket (a broken unit: refuse to start rather than poll a bad fd).
 */
static int
activated_socket(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	struct stat sb;
	int type = 0, listening = 0;
	socklen_t tl = sizeof(type), ll = sizeof(listening);

	if (pid == NULL || fds == NULL || strtol(pid, NULL, 10) != (long)getpid())
		return -1;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (strtol(fds, NULL, 10) != 1) {
		sc_error("socket activation passed %s sockets; scagentd.socket must have exactly one "
		    "ListenStream", fds);
		return -2;
	}
	if (fstat(3, &sb) < 0 || !S_ISSOCK(sb.st_mode) ||
	    getsockopt(3, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM ||
	    getsockopt(3, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) < 0 || !listening) {
		sc_error("socket activation: fd 3 is not a listening stream socket");
		return -2;
	}
	fcntl(3, F_SETFD, FD_CLOEXEC);
	return 3;
}

static const struct option opts[] = {
	{ "foreground", no_argument, NULL, 'f' },
	{ "socket", required_argument, NULL, 's' },
	{ "config", required_argument, NULL, 'c' },
	{ "module", required_argument, NULL, 'm' },
	{ "log-level", required_argument, NULL, 'l' },
	{ "syslog", no_argument, NULL, 'S' },
	{ "idle-timeout", required_argument, NULL, 'i' },
	{ "pinentry", required_argument, NULL, 'p' },
	{ "audit-log", required_argument, NULL, 'a' },
	{ "vsc-module", required_argument, NULL, 'T' },
	{ "request-timeout", required_argument, NULL, 'R' },
	{ "max-clients", required_argument, NULL, 'M' },
	{ "module-timeout", required_argument, NULL, 't' },
	{ "keygen-timeout", required_argument, NULL, 'k' },
	/* Internal: a module's worker process, started by the agent (worker.c). */
	{ "worker", required_argument, NULL, 'W' },
	{ "worker-fd", required_argument, NULL, 'F' },
	{ "worker-vsc", no_argument, NULL, 'X' },
	{ "worker-retry", no_argument, NULL, 'Q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 }
};

/* The numbers of --idle-timeout, --request-timeout and --max-clients (NULL: not given). -1: one is wrong (said). */
static int
number_args(const char *idle_arg, const char *reqto_arg, const char *maxc_arg,
    unsigned long *idle, unsigned long *reqto, unsigned long *maxc)
{
	if (idle_arg != NULL && number_arg(idle_arg, 0, ULONG_MAX, idle) < 0) {
		fprintf(stderr, "scagentd: --idle-timeout wants seconds (0: never)\n");
		return -1;
	}
	if (reqto_arg != NULL && number_arg(reqto_arg, 1, 3600, reqto) < 0) {
		fprintf(stderr, "scagentd: --request-timeout wants seconds from 1 to 3600\n");
		return -1;
	}
	if (maxc_arg != NULL && number_arg(maxc_arg, 1, 4096, maxc) < 0) {
		fprintf(stderr, "scagentd: --max-clients wants a number from 1 to 4096\n");
		return -1;
	}
	return 0;
}

/* SIGTERM, SIGINT and SIGHUP stop the agent cleanly. */
static void
catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

/* Serving: the parent that waits in detach() may go. */
static void
tell_ready(int ready[2])
{
	if (ready[1] >= 0) {
		if (write(ready[1], "r", 1) != 1) {
			/* the parent is gone: keep serving */
		}
		close(ready[1]);
		ready[1] = -1;
	}
}

/*
 * Go to the background: the parent waits until the child serves (a byte on
 * ready) and prints the environment for a shell. The exit code for main to
 * return (the parent, or a failure), or -1 in the child, which goes on.
 */
static int
detach(int ready[2], const char *sock, int *use_syslog)
{
	pid_t pid;
	char c;

	if (pipe(ready) < 0) {
		perror("scagentd: pipe");
		return 1;
	}
	if ((pid = fork()) < 0) {
		perror("scagentd: fork");
		return 1;
	}
	if (pid > 0) {
		close(ready[1]);
		if (read(ready[0], &c, 1) != 1) {
			fprintf(stderr, "scagentd: the agent did not start (see the system log)\n");
			return 1;
		}
		printf("SCAGENT_SOCKET=%s; export SCAGENT_SOCKET;\necho Agent pid %ld;\n", sock, (long)pid);
		return 0;
	}
	close(ready[0]);
	setsid();
	if (!*use_syslog && getenv("SCAGENT_LOG_STDERR") == NULL)
		*use_syslog = 1;
	int nfd = open("/dev/null", O_RDWR);
	if (nfd >= 0) {
		dup2(nfd, 0);
		dup2(nfd, 1);
		if (*use_syslog)
			dup2(nfd, 2);
		if (nfd > 2)
			close(nfd);
	}
	return -1;
}

/*
 * scagentd --worker MODULE: the store with that one module, served to the
 * agent on the socketpair fd (worker.c). Ends when the agent's end closes,
 * or with SC_WORKER_REINIT to have its module initialised again.
 */
static int
run_worker(const struct sc_config *cfg, const char *module, const char *fd_arg, int vsc, int retry,
    const struct sc_server_opts *o)
{
	struct sc_server_opts wo = *o;
	struct sc_store_opts so;
	struct sc_store *st;
	struct stat sb;
	unsigned long fd = 3;
	enum sc_log_level level = sc_log_get_level();
	int rc = 1, r, err = -1, null;

	/* The agent's end: no worker outlives the agent. */
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if ((fd_arg != NULL && number_arg(fd_arg, 3, 65535, &fd) < 0) || fstat((int)fd, &sb) < 0 ||
	    !S_ISSOCK(sb.st_mode) || getppid() == 1) {
		fprintf(stderr, "scagentd: --worker is started by scagentd itself, with its "
		    "socketpair as --worker-fd (default 3)\n");
		return 2;
	}
	fcntl((int)fd, F_SETFD, FD_CLOEXEC);
	memset(&so, 0, sizeof(so));
	so.verify_ecdsa = cfg->verify_ecdsa;
	if ((st = sc_store_new(&so)) == NULL)
		return 1;
	/*
	 * Whether the module loads, the agent logs, once (supervise.c): not each
	 * worker. Trying an absent module again (--worker-retry), what the module
	 * itself prints (tpm2-pkcs11: "Cannot open database") goes nowhere, not
	 * to the log every few minutes.
	 */
	if (level < SC_LOG_DEBUG) {
		sc_log_set_level(SC_LOG_ERROR);
		if (retry && (null = open("/dev/null", O_WRONLY | O_CLOEXEC)) >= 0) {
			err = fcntl(2, F_DUPFD_CLOEXEC, 3);
			dup2(null, 2);
			close(null);
		}
	}
	r = sc_store_add_module(st, module);
	sc_log_set_level(level);
	if (err >= 0) {
		dup2(err, 2);
		close(err);
	}
	if (r != SC_OK) {
		rc = r == SC_ERR_NOMEM ? 1 : sc_worker_absent(st, (int)fd);
		sc_store_free(st);
		return rc;
	}
	sc_info("loaded module %s", module);
	if (vsc && sc_store_set_vsc_module(st, module) != SC_OK)
		sc_warn("the TPM virtual smart card module %s could not be loaded", module);
	sc_store_refresh(st, NULL);
	wo.worker = 1;
	if ((g_srv = sc_server_new(st, (int)fd, &wo)) != NULL) {
		struct sc_server *srv = g_srv;

		catch_signals();
		if (g_stop)
			sc_server_stop(srv);
		sc_server_run(srv);
		if ((rc = sc_server_reinit(srv)) != 0) {
			/*
			 * The module failed for good: its state goes with this
			 * process, not through C_Finalize, which a module whose
			 * device or service is gone may hang in or leak from
			 * (tpm2-pkcs11 after tpm2-abrmd restarted). The agent
			 * starts a fresh worker.
			 */
			fflush(NULL);
			_exit(rc);
		}
		g_srv = NULL;
		sc_server_free(srv);
	}
	sc_store_free(st);
	return rc;
}

/*
 * The agent's workers: one per module of --module (or of the configuration),
 * the TPM's too, each once. args: the options every worker gets.
 */
static struct sc_sup *
open_workers(const struct sc_config *cfg, const char **modules, int nmods, const char *vsc_module,
    const char *const *args)
{
	struct sc_sup_opts so;
	struct sc_sup *sup;
	const char **list = calloc((size_t)nmods + cfg->nmodules + 1, sizeof(*list));
	size_t n = 0;

	if (list == NULL)
		return NULL;
	for (int i = 0; i < nmods; i++)
		list[n++] = modules[i];
	for (size_t i = 0; nmods == 0 && i < cfg->nmodules; i++)
		list[n++] = cfg->modules[i];
	if (nmods == 0 && cfg->nmodules == 0 && cfg->vsc_module == NULL && vsc_module == NULL)
		sc_warn("no PKCS#11 modules configured in %s: use --module PATH", cfg->module_dir);
	if (vsc_module == NULL && nmods == 0)
		vsc_module = cfg->vsc_module;
	if (vsc_module != NULL) {
		size_t i = 0;
		while (i < n && strcmp(list[i], vsc_module) != 0)
			i++;
		if (i == n)
			list[n++] = vsc_module;
	}
	memset(&so, 0, sizeof(so));
	so.modules = list;
	so.nmodules = n;
	so.vsc_module = vsc_module;
	so.args = args;
	so.timeout_ms = cfg->module_timeout * 1000UL;
	so.slow_timeout_ms = cfg->keygen_timeout * 1000UL;
	sup = sc_sup_new(&so);
	free(list);
	return sup;
}

/* What the command line says. */
struct args {
	const char *config, *log_level, *pinentry, *audit_log, *vsc_module;
	const char *worker_mod, *worker_fd, *modto, *kgto;
	const char **modules;
	char *sock, *idle, *reqto, *maxc;
	int nmods, foreground, use_syslog, worker_vsc, worker_retry;
};

/* The command line into a: -1 to go on, else the exit status. */
static int
parse_args(int argc, char **argv, struct args *a)
{
	int ch;

	while ((ch = getopt_long(argc, argv, "fs:c:m:l:Si:p:a:T:R:M:t:k:W:F:XQvhV", opts, NULL)) != -1) {
		switch (ch) {
		case 'f': a->foreground = 1; break;
		case 's': free(a->sock); a->sock = strdup(optarg); break;
		case 'c': a->config = optarg; break;
		case 'm': a->modules[a->nmods++] = optarg; break;
		case 'l':
			if (sc_log_parse_level(optarg) < 0) {
				fprintf(stderr, "scagentd: --log-level is error, warn, info or debug\n");
				return 2;
			}
			a->log_level = optarg;
			break;
		case 'S': a->use_syslog = 1; break;
		case 'i': a->idle = optarg; break;
		case 'p': a->pinentry = optarg; break;
		case 'a': a->audit_log = optarg; break;
		case 'T': a->vsc_module = optarg; break;
		case 'R': a->reqto = optarg; break;
		case 'M': a->maxc = optarg; break;
		case 't': a->modto = optarg; break;
		case 'k': a->kgto = optarg; break;
		case 'W': a->worker_mod = optarg; break;
		case 'F': a->worker_fd = optarg; break;
		case 'X': a->worker_vsc = 1; break;
		case 'Q': a->worker_retry = 1; break;
		case 'v': a->log_level = "debug"; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("scagentd %s\n", PACKAGE_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "scagentd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	return -1;
}

/* The server's options from the configuration and the command line. */
static void
server_opts(const struct sc_config *cfg, const struct args *a, unsigned long reqto,
    unsigned long maxc, struct sc_server_opts *sv)
{
	memset(sv, 0, sizeof(*sv));
	sv->idle_timeout_ms = cfg->idle_timeout * 1000UL;
	sv->pinentry = a->pinentry ? a->pinentry : cfg->pinentry;
	if (sv->pinentry != NULL && (strcmp(sv->pinentry, "no") == 0 || strcmp(sv->pinentry, "none") == 0))
		sv->pinentry = NULL;	/* never ask */
	sv->confirm_sign = cfg->confirm_sign;
	sv->notify = cfg->notify == 1 ? SC_NOTIFY_ALWAYS : cfg->notify == 2 ? SC_NOTIFY_NO : SC_NOTIFY_ONCE;
	sv->logout_on_lock = cfg->logout_on_lock;
	sv->audit_log = a->audit_log ? a->audit_log : cfg->audit_log;
	sv->request_timeout_ms = reqto * 1000UL;
	sv->max_clients = (int)maxc;
}

/* What every worker is told: the settings it would read, as given here (wargs[20]). */
static void
worker_args(const struct args *a, const char *idle_str, const char **wargs)
{
	size_t na = 0;

	wargs[na++] = "--log-level";
	wargs[na++] = a->log_level;
	wargs[na++] = "--idle-timeout";
	wargs[na++] = idle_str;
	if (a->use_syslog)
		wargs[na++] = "--syslog";
	if (a->config != NULL) {
		wargs[na++] = "--config";
		wargs[na++] = a->config;
	}
	if (a->pinentry != NULL) {
		wargs[na++] = "--pinentry";
		wargs[na++] = a->pinentry;
	}
	if (a->audit_log != NULL) {
		wargs[na++] = "--audit-log";
		wargs[na++] = a->audit_log;
	}
	wargs[na] = NULL;
}

int
main(int argc, char **argv)
{
	struct sc_config cfg;
	struct sc_server_opts sv;
	struct sc_server *srv;
	struct sc_sup *sup = NULL;
	struct args a;
	const char *wargs[20];
	char idle_str[32], *errmsg = NULL;
	unsigned long reqto = 0, maxc = 0;
	int lfd = -1, activated = 0, own_dir = 0;
	const char *env;
	int ready[2] = { -1, -1 }, rc = 1;

	memset(&a, 0, sizeof(a));
	if ((a.modules = calloc((size_t)argc, sizeof(*a.modules))) == NULL)
		return 1;
	if ((rc = parse_args(argc, argv, &a)) >= 0) {
		free(a.sock);
		free(a.modules);
		return rc;
	}
	rc = 1;
	sc_log_init("scagentd", SC_LOG_INFO, 0);
	if (sc_config_load(a.config, &cfg, &errmsg) != SC_OK) {
		fprintf(stderr, "scagentd: %s\n", errmsg ? errmsg : "cannot read the configuration");
		return 2;
	}
	if (a.log_level == NULL)
		a.log_level = cfg.log_level ? cfg.log_level : "info";
	if (number_args(a.idle, a.reqto, a.maxc, &cfg.idle_timeout, &reqto, &maxc) < 0)
		return 2;
	if ((a.modto != NULL && number_arg(a.modto, 1, 3600, &cfg.module_timeout) < 0) ||
	    (a.kgto != NULL && number_arg(a.kgto, 1, 3600, &cfg.keygen_timeout) < 0)) {
		fprintf(stderr, "scagentd: --module-timeout and --keygen-timeout want seconds from 1 to 3600\n");
		return 2;
	}
	server_opts(&cfg, &a, reqto, maxc, &sv);
	if (a.worker_mod != NULL) {
		harden();
		signal(SIGPIPE, SIG_IGN);
		sc_log_init("scagentd", (enum sc_log_level)sc_log_parse_level(a.log_level), a.use_syslog);
		rc = run_worker(&cfg, a.worker_mod, a.worker_fd, a.worker_vsc, a.worker_retry, &sv);
		sc_config_clear(&cfg);
		free(a.sock);
		free(a.modules);
		return rc;
	}
	if (a.sock == NULL) {
		/* Our own directory only when neither --socket nor $SCAGENT_SOCKET chose one. */
		own_dir = (env = getenv("SCAGENT_SOCKET")) == NULL || *env == '\0';
		a.sock = scagent_default_socket(NULL);
	}
	harden();
	signal(SIGPIPE, SIG_IGN);

	/* Detach before any module is loaded: no fork after C_Initialize. */
	if (!a.foreground && (rc = detach(ready, a.sock, &a.use_syslog)) >= 0)
		return rc;	/* the parent, or a failure */
	rc = 1;
	sc_log_init("scagentd", (enum sc_log_level)sc_log_parse_level(a.log_level), a.use_syslog);
	if (cfg.tpm_tcti)
		setenv("TPM2_PKCS11_TCTI", cfg.tpm_tcti, 1);
	if (cfg.tpm_store)
		export_store(cfg.tpm_store);

	/*
	 * From the moment the socket exists, SIGTERM stops the agent cleanly
	 * (socket removed, modules finalised), also while modules still load.
	 */
	catch_signals();
	if ((lfd = activated_socket()) >= 0)
		activated = 1;
	else if (lfd == -2 || (lfd = listen_socket(a.sock, own_dir)) < 0) {
		lfd = -1;
		goto out;
	}

	snprintf(idle_str, sizeof(idle_str), "%lu", cfg.idle_timeout);
	worker_args(&a, idle_str, wargs);
	if ((sup = open_workers(&cfg, a.modules, a.nmods, a.vsc_module, wargs)) == NULL)
		goto out;
	sv.socket_kept = activated;	/* the agent's: workers have no socket */
	if ((g_srv = sc_server_new(NULL, lfd, &sv)) == NULL)
		goto out;
	sc_server_set_sup(g_srv, sup);
	if (g_stop)
		sc_server_stop(g_srv);	/* signalled while starting */
	if (sc_sup_start(sup, g_srv) != SC_OK)
		goto out;
	desktop_start(g_srv);	/* notifications, logout on lock: after the workers serve */
	sc_info("listening on %s (each module in a worker process)",
	    activated ? "the activated socket" : a.sock);
	tell_ready(ready);
	sc_server_run(g_srv);
	sc_info("shutting down");
	rc = 0;
out:
	sc_sup_stop(sup);	/* every worker, hung or not, within a second */
	srv = g_srv;
	g_srv = NULL;		/* before it goes: the signal handler uses it */
	sc_server_free(srv);
	sc_sup_free(sup);
	if (lfd >= 0 && !activated) {
		close(lfd);
		unlink(a.sock);
	}
	sc_config_clear(&cfg);
	free(a.sock);
	free(a.modules);
	return rc;
}
