#!/bin/sh
# Checks the container files without a Docker engine (npm run check:containers): the
# compose file's schema and what the proxy relies on in it, the Dockerfile's lint,
# deploy/nginx-resolver.sh on Docker's and Podman's resolv.conf, and nginx -t on
# deploy/nginx.conf with the resolver it writes.
set -eu
cd "$(dirname "$0")/.."
fail () { echo "$1"; exit 1; }

docker-compose -f docker-compose.yml config -q
# The normalized config, one service at a time (its keys are sorted, 2-space indented).
service () { docker-compose -f docker-compose.yml config | awk -v name="  $1:" '$0 == name { on = 1; next } /^  [^ ]/ { on = 0 } on'; }
app=$(service app)
proxy=$(service proxy)
echo "$app" | grep -q '^      TRUST_PROXY: ' || fail "docker-compose.yml: app has no TRUST_PROXY: every client would count as the proxy"
echo "$app" | grep -q '^    healthcheck:' || fail "docker-compose.yml: app has no healthcheck (Podman drops the image's)"
echo "$proxy" | grep -A1 '^      app:' | grep -q 'condition: service_healthy' || fail "docker-compose.yml: proxy does not wait for healthy replicas"
# The mounts as written (Compose v2 renders them in its long form).
grep -q '^ *- ./deploy/nginx.conf:/etc/nginx/nginx.conf:ro$' docker-compose.yml || fail "docker-compose.yml: proxy does not mount deploy/nginx.conf"
grep -q '^ *- ./deploy/nginx-resolver.sh:/docker-entrypoint.d/[^:]*\.sh:ro$' docker-compose.yml || fail "docker-compose.yml: proxy does not run deploy/nginx-resolver.sh"
echo "docker-compose.yml: ok"

npx --no-install dockerfile-utils lint Dockerfile
echo "Dockerfile: ok"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The nginx image's entrypoint runs only executable scripts.
[ -x deploy/nginx-resolver.sh ] || fail "deploy/nginx-resolver.sh is not executable: the nginx image would skip it"
resolver () {  # $1: resolv.conf text; prints the line the script writes
  printf '%s\n' "$1" > "$tmp/resolv.conf"
  rm -f "$tmp/resolver.conf"
  RESOLV_CONF="$tmp/resolv.conf" NGINX_RESOLVER_CONF="$tmp/resolver.conf" sh deploy/nginx-resolver.sh >/dev/null || return 1
  cat "$tmp/resolver.conf"
}
expect () { [ "$1" = "$2" ] || fail "deploy/nginx-resolver.sh: wrote '$1', not '$2'"; }
expect "$(resolver 'nameserver 127.0.0.11
options ndots:0')" 'resolver 127.0.0.11 valid=10s ipv6=off;'
expect "$(resolver 'search dns.podman
nameserver 10.89.0.1
nameserver 192.168.1.1')" 'resolver 10.89.0.1 valid=10s ipv6=off;'
expect "$(resolver 'nameserver fd00::1')" 'resolver [fd00::1] valid=10s ipv6=off;'
if resolver '# no nameserver' >/dev/null 2>"$tmp/err"; then fail "deploy/nginx-resolver.sh: no nameserver, yet it succeeded"; fi
grep -q 'no nameserver' "$tmp/err" || fail "deploy/nginx-resolver.sh: no nameserver, and no message saying so"
echo "deploy/nginx-resolver.sh: ok"

nginx=$(command -v nginx || echo /usr/sbin/nginx)
# Docker's resolver, included as in the image (relative to the config's directory); the
# upstream on loopback, and every file nginx writes in a temp dir, so it runs anywhere.
resolver 'nameserver 127.0.0.11' >/dev/null
sed -e 's/set \$sse_upstream [^;]*;/set $sse_upstream 127.0.0.1:3000;/' \
    -e "s|^http {\$|http { client_body_temp_path $tmp/body; proxy_temp_path $tmp/proxy; fastcgi_temp_path $tmp/fastcgi; uwsgi_temp_path $tmp/uwsgi; scgi_temp_path $tmp/scgi;|" \
    deploy/nginx.conf > "$tmp/nginx.conf"
grep -q 'set $sse_upstream 127.0.0.1:3000;' "$tmp/nginx.conf" || fail "deploy/nginx.conf: no 'set \$sse_upstream' line"
grep -q '^ *include resolver.conf;' "$tmp/nginx.conf" || fail "deploy/nginx.conf: no 'include resolver.conf;' (the file deploy/nginx-resolver.sh writes)"
"$nginx" -t -q -p "$tmp/" -c "$tmp/nginx.conf" -e "$tmp/error.log" -g "pid $tmp/nginx.pid;" || { cat "$tmp/error.log" 2>/dev/null; exit 1; }
echo "deploy/nginx.conf: ok"
