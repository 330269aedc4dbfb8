/*
 * The audit log: one line per login, signature and token change, with the
 * client's pid, uid and program, to a file (scagentd --audit-log FILE) or,
 * with "syslog", to the log at level info.
 */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "common/err.h"
#include "common/log.h"
#include "daemon/server-private.h"

void
audit_open(struct sc_server *srv, const char *path)
{
	if (path != NULL && strcmp(path, "syslog") != 0) {
		int afd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		if (afd < 0 || (srv->audit = fdopen(afd, "a")) == NULL)
			sc_warn("cannot open the audit log %s: %s", path, strerror(errno));
	}
}

void
audit_close(struct sc_server *srv)
{
	if (srv->audit)
		fclose(srv->audit);
	srv->audit = NULL;
}

int
audit_on(const struct sc_server *srv)
{
	return srv->audit != NULL || sc_log_get_level() >= SC_LOG_INFO;
}

void
audit(struct sc_server *srv, struct client *c, const char *what, const char *detail, int r)
{
	char line[1024];
	time_t now = time(NULL);
	struct tm tm;
	char ts[32];

	char exe[3 * sizeof(c->exe)];
	size_t o = 0;

	if (!audit_on(srv))
		return;		/* nowhere to write it: spare the signing path the formatting */

	/* One field per word: blanks, controls and '%' in the path are %XX. */
	for (const unsigned char *p = (const unsigned char *)c->exe; *p && o + 4 < sizeof(exe); p++) {
		if (*p <= 0x20 || *p == 0x7f || *p == '%')
			o += (size_t)snprintf(exe + o, sizeof(exe) - o, "%%%02X", *p);
		else
			exe[o++] = (char)*p;
	}
	exe[o] = '\0';
	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(line, sizeof(line), "%s pid=%ld uid=%lu exe=%s %s result=%s",
	    what, (long)c->pid, (unsigned long)c->uid, exe, detail, sc_errname(r));
	if (srv->audit != NULL) {
		pthread_mutex_lock(&srv->lock);
		fprintf(srv->audit, "%s %s\n", ts, line);
		fflush(srv->audit);
		pthread_mutex_unlock(&srv->lock);
	} else
		sc_info("audit: %s", line);
}

