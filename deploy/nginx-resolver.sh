#!/bin/sh
# The nginx image's entrypoint runs this (docker-compose.yml mounts it in
# /docker-entrypoint.d/) before nginx starts: it writes the resolver deploy/nginx.conf
# includes, from the container's own /etc/resolv.conf, so the replicas' names resolve on
# Docker (its DNS at 127.0.0.11) and Podman (aardvark-dns on the network's gateway) alike.
# Only the first nameserver: nginx takes turns over all it is given, and one that does not
# know the replicas would fail every other lookup. deploy/check.sh sets both paths.
conf=${RESOLV_CONF:-/etc/resolv.conf}
out=${NGINX_RESOLVER_CONF:-/etc/nginx/resolver.conf}
ns=$(awk '$1 == "nameserver" { print $2; exit }' "$conf")
case "$ns" in
  '') echo "$0: no nameserver in $conf: nginx could not find the replicas" >&2; exit 1 ;;
  # nginx takes an IPv6 address in brackets.
  *:*) ns="[$ns]" ;;
esac
echo "resolver $ns valid=10s ipv6=off;" > "$out"
echo "$0: $out: resolver $ns"
