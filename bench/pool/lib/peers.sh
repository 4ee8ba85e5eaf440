# shellcheck shell=bash
# shellcheck disable=SC2034 # PEER_BASE is read by bench/pool/run
# The peers of issue #11, each in a private prefix under "$WORK" with its own
# port, config and pid file (never the system services): nginx + PHP-FPM
# (pm = static, pm.max_requests = 1000) and nginx + fcgiwrap running the PHP
# scripts as fork+exec CGI (php-cgi per request). Sourced by bench/pool/run,
# which provides WORK, HERE, WORKERS, wait_port and the PEER_PIDS array.

PHP_FPM=$(command -v php-fpm8.2 || command -v php-fpm || true)
PHP_CGI=$(command -v php-cgi || true)

# Installs the peers from Debian's packages when missing. Package scripts
# must not start the system services: a policy-rc.d that denies them is in
# place during the install (and removed after, if this created it).
ensure_peers() {
    if command -v nginx >/dev/null && [ -n "$PHP_FPM" ] && [ -n "$PHP_CGI" ] && command -v fcgiwrap >/dev/null; then
        return
    fi
    echo "installing nginx, php-fpm, php-cgi and fcgiwrap from Debian" >&2
    local created=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        created=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx php-fpm php-cgi fcgiwrap >/dev/null
    [ -n "$created" ] && rm -f /usr/sbin/policy-rc.d
    PHP_FPM=$(command -v php-fpm8.2 || command -v php-fpm)
    PHP_CGI=$(command -v php-cgi)
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# nginx in the foreground (so its pid is ours) with one FastCGI location.
start_nginx() { # dir port fastcgi-socket location-block-extra
    local dir=$1 port=$2 socket=$3 extra=$4
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<CONF
daemon off;
worker_processes $WORKERS;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
user nobody nogroup;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    fastcgi_temp_path $dir/tmp/fastcgi;
    proxy_temp_path $dir/tmp/proxy;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$port;
        root $dir/www;
        location ~ \.php\$ {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param REDIRECT_STATUS 200;
            fastcgi_pass unix:$socket;
            $extra
        }
    }
}
CONF
    nginx -c "$dir/nginx.conf" -e "$dir/nginx-error.log" >"$dir/nginx.out" 2>&1 &
    PEER_PIDS+=($!)
}

# nginx + PHP-FPM with a static pool of $children workers (PHP_FPM_EXTRA:
# more pool settings, one per line).
start_php_fpm() { # name children
    local dir="$WORK/$1" children=$2 port
    mkdir -p "$dir/www"
    chmod 755 "$WORK" "$dir"
    cp "$HERE"/workloads/php/*.php "$dir/www/"
    cat >"$dir/php-fpm.conf" <<CONF
[global]
pid = $dir/php-fpm.pid
error_log = $dir/php-fpm.log
daemonize = no

[bench]
user = nobody
group = nogroup
listen = $dir/php-fpm.sock
listen.owner = nobody
listen.group = nogroup
listen.mode = 0660
pm = static
pm.max_children = $children
pm.max_requests = 1000
${PHP_FPM_EXTRA:-}
CONF
    "$PHP_FPM" --nodaemonize --fpm-config "$dir/php-fpm.conf" >"$dir/php-fpm.out" 2>&1 &
    PEER_PIDS+=($!)
    port=$(free_port)
    start_nginx "$dir" "$port" "$dir/php-fpm.sock" ""
    wait_port "$port"
    PEER_BASE="http://127.0.0.1:$port"
}

# nginx + fcgiwrap: every request forks and execs php-cgi on the script.
start_fcgiwrap() { # name
    local dir="$WORK/$1" port f
    mkdir -p "$dir/www"
    chmod 755 "$WORK" "$dir"
    for f in "$HERE"/workloads/php/*.php; do
        { echo "#!$PHP_CGI"; cat "$f"; } >"$dir/www/$(basename "$f")"
        chmod 755 "$dir/www/$(basename "$f")"
    done
    # fcgiwrap has no user option: its socket is opened to nginx's workers.
    fcgiwrap -c "$WORKERS" -s "unix:$dir/fcgiwrap.sock" >"$dir/fcgiwrap.out" 2>&1 &
    PEER_PIDS+=($!)
    for _ in $(seq 1 50); do [ -S "$dir/fcgiwrap.sock" ] && break; sleep 0.1; done
    chmod 666 "$dir/fcgiwrap.sock"
    port=$(free_port)
    start_nginx "$dir" "$port" "$dir/fcgiwrap.sock" ""
    wait_port "$port"
    PEER_BASE="http://127.0.0.1:$port"
}
