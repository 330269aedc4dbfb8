# shellcheck shell=bash
# Shared set-up of the TLS tests: the demo card, an agent logged in to it,
# nginx and Apache servers. Source after testbed.sh (which has the assertions
# and the agent fixture).

# tls_card: token "demo" with alice (RSA-2048), bob (EC P-256), an expired
# RSA certificate "expired" and the issuing CA (for the chain). alice and bob
# both fit the test servers, where the client would have to ask which one
# goes (issue 24): alice is remembered for localhost and 127.0.0.1, as
# `scagent prefer localhost alice` does (tls_prefer_alice).
tls_card() {
	tb_pki
	tb_softhsm_token demo
	tb_enroll demo 01 alice rsa:2048 good
	tb_enroll demo 02 bob EC:prime256v1 good
	tb_enroll demo 11 expired rsa:2048 expired
	tb_write_ca_certs demo
	tls_prefer_alice
}

# tls_sha256 FILE: a certificate's SHA-256 fingerprint, lower-case hex
tls_sha256() { openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr A-F a-f; }

# tls_prefer_alice: the preferences file names alice for localhost and 127.0.0.1
tls_prefer_alice() {
	local fp
	fp=$(tls_sha256 "$TB_DIR/certs/alice.pem")
	mkdir -p "$XDG_CONFIG_HOME/scagent"
	printf 'localhost %s\n127.0.0.1 %s\n' "$fp" "$fp" >"$XDG_CONFIG_HOME/scagent/preferences"
}

# tls_agent: that card, an agent on $TB_DIR/agent.sock, logged in to "demo".
tls_agent() {
	tls_card
	start_agent --module "$TB_SOFTHSM"
	echo "$TB_PIN" | "$SCAGENT" login --token demo --pin-stdin 2>/dev/null ||
		bail_out "login failed"
}

# wait_port PORT: until something listens on 127.0.0.1:PORT (10 s)
wait_port() {
	for _ in $(seq 100); do _tb_listening "$1" && return 0; sleep 0.1; done
	return 1
}

# tls_nginx NAME PORT [extra server directives]: nginx requiring a client
# certificate from the Contoso PKI on 127.0.0.1:PORT, TLS 1.2 and 1.3.
# Access log with the TLS version and the client certificate's subject.
# NGINX_CERT=FILE: the server's certificate file (default leaf + issuing CA;
# the leaf alone makes a server that does not send its intermediate);
# NGINX_VERIFY=optional: ssl_verify_client optional (IIS's "Accept").
tls_nginx() {
	local name=$1 port=$2 extra=${3:-} d=$TB_DIR/nginx-$1 p=$TB_DIR/pki
	local cert=${NGINX_CERT:-$TB_DIR/pki/localhost-chain.pem} verify=${NGINX_VERIFY:-on}
	_tb_need nginx
	[ -f "$p/localhost.pem" ] || tb_server_cert localhost DNS:localhost IP:127.0.0.1
	mkdir -p "$d/html" "$d/logs" "$d/tmp"
	echo "hello from nginx $name" >"$d/html/index.html"
	# nginx's workers run as nobody: they must reach the page
	chmod a+x "$TB_DIR" "$d"
	chmod -R a+rX "$d/html"
	cat >"$d/nginx.conf" <<-NGX
		worker_processes 1;
		pid $d/nginx.pid;
		error_log $d/logs/error.log info;
		events { worker_connections 64; }
		http {
		    access_log off;
		    client_body_temp_path $d/tmp/body;
		    proxy_temp_path $d/tmp/proxy;
		    fastcgi_temp_path $d/tmp/fastcgi;
		    uwsgi_temp_path $d/tmp/uwsgi;
		    scgi_temp_path $d/tmp/scgi;
		    log_format tls '\$ssl_protocol \$status "\$ssl_client_s_dn" \$ssl_client_verify';
		    server {
		        listen 127.0.0.1:$port ssl;
		        server_name localhost;
		        ssl_certificate $cert;
		        ssl_certificate_key $p/localhost.key;
		        ssl_protocols TLSv1.2 TLSv1.3;
		        ssl_client_certificate $p/ca-chain.pem;
		        ssl_verify_client $verify;
		        ssl_verify_depth 3;
		        access_log $d/logs/access.log tls;
		        root $d/html;
		        $extra
		    }
		}
	NGX
	nginx -c "$d/nginx.conf" -p "$d" -g 'daemon off;' >"$d/logs/stdout.log" 2>&1 &
	tb_track_pid $!
	wait_port "$port" || { cat "$d/logs/error.log" "$d/logs/stdout.log" >&2; echo "Bail out! nginx did not start"; exit 99; }
}

# tls_apache PORT: Apache httpd, no certificate needed except under
# /Microsoft-Server-ActiveSync (renegotiation over TLS 1.2, post-handshake
# authentication over TLS 1.3). SSL log with protocol and client subject.
tls_apache() {
	local d=$TB_DIR/apache
	mkdir -p "$d/htdocs/Microsoft-Server-ActiveSync"
	echo "apache public page" >"$d/htdocs/index.html"
	echo "activesync ok" >"$d/htdocs/Microsoft-Server-ActiveSync/index.html"
	_tls_apache_run "$d" "$1" "" <<-'APA'
		<Location /Microsoft-Server-ActiveSync>
		    SSLVerifyClient require
		    # small, so that a POST body over a renegotiation gets 413 (as IIS
		    # with its default uploadReadAheadSize)
		    SSLRenegBufferSize 1024
		</Location>
	APA
}

# _tls_apache_run DIR PORT MODULES < LOCATIONS: Apache httpd serving
# DIR/htdocs on 127.0.0.1:PORT with the Contoso server certificate and chain,
# no client certificate on the virtual host, the <Location> sections (or
# virtual host directives, which override those before them) read
# from standard input, MODULES (names, as "auth_basic authn_file") loaded
# too. SSL log: DIR/logs/ssl.log; error log DIR/logs/error.log at the level
# APACHE_LOGLEVEL (default "info ssl:info").
_tls_apache_run() {
	local d=$1 port=$2 p=$TB_DIR/pki mods=/usr/lib/apache2/modules m loads="" locations
	locations=$(cat)
	_tb_need apache2
	[ -f "$p/localhost.pem" ] || tb_server_cert localhost DNS:localhost IP:127.0.0.1
	mkdir -p "$d/htdocs" "$d/logs"
	for m in $3; do loads="$loads
LoadModule ${m}_module $mods/mod_$m.so"; done
	chmod -R a+rX "$d" "$p"
	chmod a+x "$TB_DIR"
	cat >"$d/httpd.conf" <<-APA
		ServerRoot $d
		ServerName localhost
		PidFile $d/httpd.pid
		Listen 127.0.0.1:$port
		User www-data
		Group www-data
		LoadModule mpm_event_module $mods/mod_mpm_event.so
		LoadModule authz_core_module $mods/mod_authz_core.so
		LoadModule mime_module $mods/mod_mime.so
		LoadModule dir_module $mods/mod_dir.so
		LoadModule socache_shmcb_module $mods/mod_socache_shmcb.so
		LoadModule ssl_module $mods/mod_ssl.so$loads
		TypesConfig /etc/mime.types
		DirectoryIndex index.html
		ErrorLog $d/logs/error.log
		LogLevel ${APACHE_LOGLEVEL:-info ssl:info}
		DefaultRuntimeDir $d
		SSLSessionCache shmcb:$d/ssl_scache(512000)
		<VirtualHost 127.0.0.1:$port>
		    DocumentRoot $d/htdocs
		    SSLEngine on
		    SSLProtocol -all +TLSv1.2 +TLSv1.3
		    SSLCertificateFile $p/localhost.pem
		    SSLCertificateKeyFile $p/localhost.key
		    SSLCertificateChainFile $p/issuing.pem
		    SSLCACertificateFile $p/ca-chain.pem
		    SSLVerifyClient none
		    SSLVerifyDepth 3
		    CustomLog $d/logs/ssl.log "%{SSL_PROTOCOL}x %>s %U \"%{SSL_CLIENT_S_DN}x\" %{SSL_CLIENT_VERIFY}x"
		    <Directory $d/htdocs>
		        Require all granted
		    </Directory>
		$locations
		</VirtualHost>
	APA
	apache2 -f "$d/httpd.conf" -DFOREGROUND >"$d/logs/stdout.log" 2>&1 &
	tb_track_pid $!
	wait_port "$port" || { cat "$d/logs/error.log" "$d/logs/stdout.log" >&2; echo "Bail out! apache did not start"; exit 99; }
}

# probe EXPECTED-RC 'id=status id=status...' what probe-args...
# checks the exit code, the JSON shape (ids in order) and the given statuses;
# the JSON in $out, stderr in $err (set them first).
probe() {
	local want_rc=$1 want=$2 what=$3 rc=0 got
	shift 3
	"$SCAGENT" probe --json "$@" >"$out" 2>"$err" || rc=$?
	got=$(python3 - "$out" <<-'PY'
		import json, sys
		ids = ["resolve", "tcp", "tls-handshake", "server-chain", "server-name", "principal",
		       "client-cert-request", "client-cert-required", "client-cert-match",
		       "client-auth", "http"]
		d = json.load(open(sys.argv[1]))
		c = d["checks"]
		assert [x["id"] for x in c] == ids, "ids"
		assert all(x["status"] in ("pass", "warn", "fail", "skip") for x in c)
		assert all(x["detail"] for x in c)
		assert all(x.get("advice") for x in c if x["status"] == "fail"), "advice"
		fails = [x for x in c if x["status"] == "fail"]
		assert d["result"] == ("fail" if fails else "pass")
		print(" ".join("%s=%s" % (x["id"], x["status"]) for x in c), d["result"])
	PY
	) || got="bad-json"
	local bad=0
	[ "$rc" = "$want_rc" ] || bad=1
	for w in $want; do case " $got " in *" $w "*) ;; *) bad=1 ;; esac; done
	if [ "$bad" = 0 ]; then
		pass "$what"
	else
		fail "$what (rc=$rc; $got)" "$(cat "$out" "$err")"
	fi
}

# tls_apache_exchange PORT: Apache httpd laid out as an Exchange server's IIS
# virtual directories, each with its own client certificate setting (IIS's
# per-vdir SSL Settings; TLS 1.2: renegotiation, TLS 1.3: post-handshake
# authentication, as IIS without clientcertnegotiation):
#   /autodiscover/autodiscover.xml, /owa/  no certificate asked ("Ignore")
#   /ecp/                     asked, not required ("Accept": optional)
#   /Microsoft-Server-ActiveSync/, /OAB/   required ("Require")
#   /EWS/Exchange.asmx        required, then IIS's 403.16 page
#   /mapi/                    required, then 401 (no account for the certificate)
#   /iis/403.13/, /iis/403.17/  required, then IIS's 403.13 / 403.17 page
#   /iis/403.7/               asked (optional at TLS), IIS's 403.7 page without a
#                             certificate (IIS's "Require"), and here with one too
#   /rpc/rpcproxy.dll         absent (404)
# SSL log as tls_apache's, in $TB_DIR/apache-exchange/logs/ssl.log.
tls_apache_exchange() {
	local d=$TB_DIR/apache-exchange v
	mkdir -p "$d/htdocs/autodiscover" "$d/htdocs/EWS"
	for v in owa ecp Microsoft-Server-ActiveSync OAB mapi iis/403.7 iis/403.13 iis/403.17; do
		mkdir -p "$d/htdocs/$v"
		echo "$v ok" >"$d/htdocs/$v/index.html"
	done
	echo "<Autodiscover/>" >"$d/htdocs/autodiscover/autodiscover.xml"
	echo "ews ok" >"$d/htdocs/EWS/Exchange.asmx"
	: >"$d/users"
	_tls_apache_run "$d" "$1" "authz_user authn_core authn_file auth_basic" <<-APA
		<Location /ecp>
		    SSLVerifyClient optional
		</Location>
		<Location /Microsoft-Server-ActiveSync>
		    SSLVerifyClient require
		</Location>
		<Location /OAB>
		    SSLVerifyClient require
		</Location>
		<Location /EWS>
		    SSLVerifyClient require
		    Require expr %{SSL_CLIENT_S_DN_CN} == 'nobody'
		    ErrorDocument 403 "<html><body><h1>Server Error</h1><h2>HTTP Error 403.16 - Forbidden</h2><p>Your client certificate is either not trusted or is invalid.</p></body></html>"
		</Location>
		<Location /iis/403.7>
		    SSLVerifyClient optional
		    Require expr %{SSL_CLIENT_VERIFY} == 'SUCCESS' && %{SSL_CLIENT_S_DN_CN} == 'nobody'
		    ErrorDocument 403 "<html><body><h2>HTTP Error 403.7 - Forbidden</h2><p>The page you are attempting to access requires your browser to have a Secure Sockets Layer (SSL) client certificate that the Web server recognizes.</p></body></html>"
		</Location>
		<Location /iis/403.13>
		    SSLVerifyClient require
		    Require expr %{SSL_CLIENT_S_DN_CN} == 'nobody'
		    ErrorDocument 403 "<html><body><h2>HTTP Error 403.13 - Forbidden</h2><p>The client certificate used for this request has been revoked by the Web server.</p></body></html>"
		</Location>
		<Location /iis/403.17>
		    SSLVerifyClient require
		    Require expr %{SSL_CLIENT_S_DN_CN} == 'nobody'
		    ErrorDocument 403 "<html><body><h2>HTTP Error 403.17 - Forbidden</h2><p>Your client certificate has expired or is not yet valid.</p></body></html>"
		</Location>
		<Location /mapi>
		    SSLVerifyClient require
		    AuthType Basic
		    AuthName "mapi"
		    AuthBasicProvider file
		    AuthUserFile $d/users
		    Require valid-user
		</Location>
	APA
}

# tls_proxy_py: $TB_DIR/proxy.py, a small Python CONNECT relay that logs what
# it was asked. Run: python3 "$TB_DIR/proxy.py" PORT LOG [USER:PASS [STATUS-LINE [MODE-FILE]]]
# (USER:PASS "" or absent: no credentials wanted; STATUS-LINE: its answer to
# CONNECT, "" or absent "HTTP/1.1 200 Connection established", \xNN escapes
# allowed; MODE-FILE, read at each connection, names a misbehaviour: endless
# (a header line with no end, 40 s), esc502 or esc200 (raw bytes in the status line)).
tls_proxy_py() {
	cat >"$TB_DIR/proxy.py" <<-'PY'
		import base64, socket, sys, threading, time
		port, log, need = int(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else ""
		# the status line of its answers to CONNECT (Python escapes such as \x1b allowed)
		ok = (sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else "HTTP/1.1 200 Connection established")
		ok = ok.encode("latin-1").decode("unicode_escape").encode("latin-1")
		modef = sys.argv[5] if len(sys.argv) > 5 else None
		def misbehave(c, mode):
		    if mode == "endless":
		        c.sendall(b"HTTP/1.1 200 OK\r\nX-Pad: ")
		        end = time.time() + 40
		        while time.time() < end:
		            c.sendall(b"a" * 4096)
		    elif mode == "esc502":
		        c.sendall(b"HTTP/1.1 502 Bad \xff\xfe\x1b[2J Gateway\r\n\r\n")
		    elif mode == "esc200":
		        c.sendall(b"HTTP/1.1 200 OK \x1b]0;owned\x07\r\n\r\n")
		        time.sleep(1)
		def pipe(a, b):
		    try:
		        while True:
		            d = a.recv(65536)
		            if not d: break
		            b.sendall(d)
		    except OSError: pass
		    finally:
		        try: b.shutdown(socket.SHUT_WR)
		        except OSError: pass
		def serve(c):
		    head = b""
		    while b"\r\n\r\n" not in head:
		        d = c.recv(1)
		        if not d: return c.close()
		        head += d
		    lines = head.decode().split("\r\n")
		    auth = ""
		    for l in lines[1:]:
		        if l.lower().startswith("proxy-authorization: basic "):
		            auth = base64.b64decode(l.split()[2]).decode()
		    with open(log, "a") as f: f.write("%s auth=%s\n" % (lines[0], auth or "-"))
		    if modef:
		        try: misbehave(c, open(modef).read().strip())
		        except OSError: pass
		        return c.close()
		    if need and auth != need:
		        c.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\n\r\n")
		        return c.close()
		    host, _, p = lines[0].split()[1].rpartition(":")
		    u = socket.create_connection((host.strip("[]"), int(p)))
		    c.sendall(ok + b"\r\n\r\n")
		    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
		    pipe(c, u)
		s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
		s.bind(("127.0.0.1", port)); s.listen(16)
		while True:
		    c, _ = s.accept()
		    threading.Thread(target=serve, args=(c,), daemon=True).start()
	PY
}
