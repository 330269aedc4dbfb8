# shellcheck shell=bash
# Shared set-up of the TLS tests: the demo card, an agent logged in to it,
# nginx and Apache servers. Source after testbed.sh (which has the assertions
# and the agent fixture).

# tls_card: token "demo" with alice (RSA-2048), bob (EC P-256), an expired
# RSA certificate "expired" and the issuing CA (for the chain).
tls_card() {
	tb_pki
	tb_softhsm_token demo
	tb_enroll demo 01 alice rsa:2048 good
	tb_enroll demo 02 bob EC:prime256v1 good
	tb_enroll demo 11 expired rsa:2048 expired
	tb_write_ca_certs demo
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
tls_nginx() {
	local name=$1 port=$2 extra=${3:-} d=$TB_DIR/nginx-$1 p=$TB_DIR/pki
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
		        ssl_certificate $p/localhost-chain.pem;
		        ssl_certificate_key $p/localhost.key;
		        ssl_protocols TLSv1.2 TLSv1.3;
		        ssl_client_certificate $p/ca-chain.pem;
		        ssl_verify_client on;
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
	local port=$1 d=$TB_DIR/apache p=$TB_DIR/pki mods=/usr/lib/apache2/modules
	_tb_need apache2
	[ -f "$p/localhost.pem" ] || tb_server_cert localhost DNS:localhost IP:127.0.0.1
	mkdir -p "$d/htdocs/Microsoft-Server-ActiveSync" "$d/logs"
	echo "apache public page" >"$d/htdocs/index.html"
	echo "activesync ok" >"$d/htdocs/Microsoft-Server-ActiveSync/index.html"
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
		LoadModule ssl_module $mods/mod_ssl.so
		TypesConfig /etc/mime.types
		DirectoryIndex index.html
		ErrorLog $d/logs/error.log
		LogLevel info ssl:info
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
		    <Location /Microsoft-Server-ActiveSync>
		        SSLVerifyClient require
		        # small, so that a POST body over a renegotiation gets 413 (as IIS
		        # with its default uploadReadAheadSize)
		        SSLRenegBufferSize 1024
		    </Location>
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
		       "client-cert-request", "client-cert-match", "client-auth", "http"]
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
