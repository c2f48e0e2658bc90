#!/bin/sh
# Checks the container files without a Docker engine (npm run check:containers):
# the compose file's schema, the Dockerfile's lint, and nginx -t on deploy/nginx.conf.
set -eu
cd "$(dirname "$0")/.."

docker-compose -f docker-compose.yml config -q
echo "docker-compose.yml: ok"

npx --no-install dockerfile-utils lint Dockerfile
echo "Dockerfile: ok"

nginx=$(command -v nginx || echo /usr/sbin/nginx)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The upstream on loopback, and every file nginx writes in a temp dir, so it runs anywhere.
sed -e 's/set \$sse_upstream [^;]*;/set $sse_upstream 127.0.0.1:3000;/' \
    -e "s|^http {\$|http { client_body_temp_path $tmp/body; proxy_temp_path $tmp/proxy; fastcgi_temp_path $tmp/fastcgi; uwsgi_temp_path $tmp/uwsgi; scgi_temp_path $tmp/scgi;|" \
    deploy/nginx.conf > "$tmp/nginx.conf"
grep -q 'set $sse_upstream 127.0.0.1:3000;' "$tmp/nginx.conf" || { echo "deploy/nginx.conf: no 'set \$sse_upstream' line"; exit 1; }
"$nginx" -t -q -p "$tmp/" -c "$tmp/nginx.conf" -e "$tmp/error.log" -g "pid $tmp/nginx.pid;" || { cat "$tmp/error.log" 2>/dev/null; exit 1; }
echo "deploy/nginx.conf: ok"
