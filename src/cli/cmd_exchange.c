/*
 * scagent probe --exchange HOST: the sweep of the virtual directories
 * (tls/exchange.c) printed as one table, or JSON (INTERFACE.md). The
 * server's words (names, HTTP reasons, in detail and advice) may be any
 * bytes: JSON gets them as valid UTF-8 (common/text.h).
 */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>
#include "cli/cli.h"
#include "cli/exchange.h"
#include "common/err.h"
#include "common/text.h"
#include "tls/exchange.h"

static void
print_json(const struct sc_exchange *sw, const struct sc_exchange_endpoint *ep, int n, const char *result)
{
	json_object *o = json_object_new_object(), *arr = json_object_new_array(), *sv;
	char hp[300];

	snprintf(hp, sizeof(hp), "%s%s%s", sw->host, strcmp(sw->port, "443") ? ":" : "",
	    strcmp(sw->port, "443") ? sw->port : "");
	json_object_object_add(o, "host", sc_json_new_text(hp));
	for (int i = 0; i < n; i++) {
		json_object *e = json_object_new_object();
		json_object_object_add(e, "path", sc_json_new_text(ep[i].path));
		json_object_object_add(e, "client_cert", json_object_new_string(ep[i].client_cert));
		json_object_object_add(e, "requested", json_object_new_string(ep[i].requested));
		json_object_object_add(e, "status_without_cert",
		    ep[i].without >= 0 ? json_object_new_int(ep[i].without) : NULL);
		json_object_object_add(e, "status_with_cert",
		    ep[i].with >= 0 ? json_object_new_int(ep[i].with) : NULL);
		json_object_object_add(e, "result", json_object_new_string(ep[i].result));
		if (ep[i].code[0])
			json_object_object_add(e, "code", json_object_new_string(ep[i].code));
		json_object_object_add(e, "advice", sc_json_new_text(ep[i].advice));
		json_object_array_add(arr, e);
	}
	json_object_object_add(o, "endpoints", arr);
	if (sw->sv.checked) {
		sv = json_object_new_object();
		json_object_object_add(sv, "tls", sc_json_new_text(sw->sv.desc));
		json_object_object_add(sv, "server_chain", json_object_new_string(sw->sv.chain.status));
		if (sw->sv.chain.code[0])
			json_object_object_add(sv, "code", json_object_new_string(sw->sv.chain.code));
		json_object_object_add(sv, "detail", sc_json_new_text(sw->sv.chain.detail));
		if (sw->sv.chain.advice[0] && strcmp(sw->sv.chain.status, "pass") != 0)
			json_object_object_add(sv, "advice", sc_json_new_text(sw->sv.chain.advice));
		json_object_object_add(sv, "server_name", json_object_new_string(sw->sv.name.status));
		if (strcmp(sw->sv.name.status, "fail") == 0)
			json_object_object_add(sv, "name_detail", sc_json_new_text(sw->sv.name.detail));
		if (sw->sv.principal[0])
			json_object_object_add(sv, "principal", sc_json_new_text(sw->sv.principal));
		json_object_object_add(o, "server", sv);
	}
	json_object_object_add(o, "signatures", json_object_new_int(sw->signatures));
	json_object_object_add(o, "result", json_object_new_string(result));
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
	    JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

static void
status_text(int status, char *buf, size_t len)
{
	if (status >= 0)
		snprintf(buf, len, "%d", status);
	else
		snprintf(buf, len, "-");
}

static void
print_table(const struct sc_exchange *sw, const struct sc_exchange_endpoint *ep, int n, const char *result)
{
	char w1[16], w2[16];

	cli_say(stdout, "Exchange virtual directories on %s port %s%s%s%s", sw->host, sw->port,
	    sw->sv.checked ? " (" : "", sw->sv.checked ? sw->sv.desc : "", sw->sv.checked ? ")" : "");
	if (sw->sv.checked && strcmp(sw->sv.chain.status, "pass") != 0) {
		cli_say(stdout, "server-chain %s [%s]: %s", sw->sv.chain.status, sw->sv.chain.code,
		    sw->sv.chain.detail);
		cli_say(stdout, "  advice: %s", sw->sv.chain.advice);
	}
	if (sw->sv.checked && strcmp(sw->sv.name.status, "fail") == 0)
		cli_say(stdout, "server-name fail [wrong-name]: %s", sw->sv.name.detail);
	if (sw->sv.checked && sw->sv.principal[0])
		cli_say(stdout, "principal fail: %s", sw->sv.principal);
	printf("%-32s %-8s %-15s %-7s %-7s %-6s %s\n", "PATH", "CERT", "REQUESTED", "WITHOUT",
	    "WITH", "RESULT", "ADVICE");
	for (int i = 0; i < n; i++) {
		status_text(ep[i].without, w1, sizeof(w1));
		status_text(ep[i].with, w2, sizeof(w2));
		cli_say(stdout, "%-32s %-8s %-15s %-7s %-7s %-6s %s%s%s%s", ep[i].path, ep[i].client_cert,
		    ep[i].requested, w1, w2, ep[i].result, ep[i].code[0] ? "[" : "", ep[i].code,
		    ep[i].code[0] ? "] " : "", ep[i].advice[0] ? ep[i].advice : "-");
	}
	printf("card signatures: %d\n", sw->signatures);
	printf("result: %s\n", result);
}

int
probe_exchange(const struct sc_tls_opts *o, const char *target, const char **extra,
    int nextra, int json)
{
	struct sc_exchange sw;
	char why[256];
	int rc;

	if (sc_exchange_init(&sw, o, target, why, sizeof(why)) != SC_OK) {
		if (why[0] != '\0')
			cli_err("--exchange %s: %s", target, why);
		return EX_SC_USAGE;
	}
	if ((rc = tls_proxy_check(o, sw.host, sw.port)) != EX_SC_OK) {
		sc_exchange_free(&sw);
		return rc;
	}
	if (sc_exchange_run(&sw, extra, nextra) != SC_OK)
		return EX_SC_FAIL;
	if (json)
		print_json(&sw, sw.ep, sw.n, sw.result);
	else
		print_table(&sw, sw.ep, sw.n, sw.result);
	rc = strcmp(sw.result, "fail") == 0 ? EX_SC_FAIL : EX_SC_OK;
	sc_exchange_free(&sw);
	return rc;
}
