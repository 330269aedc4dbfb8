/* Logging: to stderr or syslog, with a level. Library code logs; it never exits. */
#ifndef SC_LOG_H
#define SC_LOG_H

enum sc_log_level { SC_LOG_ERROR = 0, SC_LOG_WARN, SC_LOG_INFO, SC_LOG_DEBUG };

/* ident: program name; use_syslog: 0 stderr, 1 syslog (LOG_DAEMON). */
void sc_log_init(const char *ident, enum sc_log_level level, int use_syslog);
void sc_log_set_level(enum sc_log_level level);
enum sc_log_level sc_log_get_level(void);
/* Parse "error|warn|info|debug"; -1 when unknown. */
int sc_log_parse_level(const char *s);
void sc_log(enum sc_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define sc_error(...) sc_log(SC_LOG_ERROR, __VA_ARGS__)
#define sc_warn(...) sc_log(SC_LOG_WARN, __VA_ARGS__)
#define sc_info(...) sc_log(SC_LOG_INFO, __VA_ARGS__)
#define sc_debug(...) sc_log(SC_LOG_DEBUG, __VA_ARGS__)

#endif
