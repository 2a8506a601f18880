#!/bin/sh
# Render users.acl from the template and the two password files, then run redis-server
# with it. The passwords come from Docker secrets (one file each, one line); only their
# SHA-256 reaches the rendered ACL, which lives on a tmpfs and is never committed.
#
#   REDIS_ACL_SECRETS_DIR   where the password files are (default /run/secrets)
#   REDIS_ACL_TEMPLATE      the template (default: users.acl.template beside this script)
#   REDIS_ACL_FILE          where the rendered ACL goes (default /tmp/users.acl)
#   REDIS_HINT_CHANNEL      the hint channel (default fleetconf:config)
#   REDIS_TLS_PORT          a port to serve TLS on as well (default empty: no TLS)
#   REDIS_TLS_CERT_FILE     the server certificate, PEM (default /run/redis-tls/redis.crt)
#   REDIS_TLS_KEY_FILE      its private key, PEM (default /run/redis-tls/redis.key)
#   REDIS_TLS_CA_FILE       the CA certificate, PEM (default /run/redis-tls/ca.crt)
# Any arguments are passed on to redis-server. With TLS the plain port still serves (the
# controller on the compose network uses it); clients of the TLS port are not asked for
# a certificate of their own: they log in with the ACL's passwords, as on the plain port.
set -eu

secrets_dir="${REDIS_ACL_SECRETS_DIR:-/run/secrets}"
template="${REDIS_ACL_TEMPLATE:-$(dirname "$0")/users.acl.template}"
acl_file="${REDIS_ACL_FILE:-/tmp/users.acl}"
channel="${REDIS_HINT_CHANNEL:-fleetconf:config}"

hash_of() {
    file="$secrets_dir/$1"
    if [ ! -s "$file" ]; then
        echo "redis-acl: $file is missing or empty" >&2
        exit 1
    fi
    # The password is the file's first line, without its newline.
    head -n 1 "$file" | tr -d '\r\n' | sha256sum | cut -d ' ' -f 1
}

tls_port="${REDIS_TLS_PORT:-}"
if [ -n "$tls_port" ] && [ "$tls_port" != 0 ]; then
    tls_cert="${REDIS_TLS_CERT_FILE:-/run/redis-tls/redis.crt}"
    tls_key="${REDIS_TLS_KEY_FILE:-/run/redis-tls/redis.key}"
    tls_ca="${REDIS_TLS_CA_FILE:-/run/redis-tls/ca.crt}"
    for file in "$tls_cert" "$tls_key" "$tls_ca"; do
        if [ ! -s "$file" ]; then
            echo "redis-tls: $file is missing or empty (REDIS_TLS_PORT=$tls_port)" >&2
            exit 1
        fi
    done
    set -- "$@" --tls-port "$tls_port" --tls-cert-file "$tls_cert" \
        --tls-key-file "$tls_key" --tls-ca-cert-file "$tls_ca" --tls-auth-clients no
fi

controller_hash="$(hash_of redis_controller_password)"
agent_hash="$(hash_of redis_agent_password)"
umask 077
sed -e "s/@CONTROLLER_PASSWORD_SHA256@/$controller_hash/" \
    -e "s/@AGENT_PASSWORD_SHA256@/$agent_hash/" \
    -e "s/@HINT_CHANNEL@/$channel/g" -e "/^#/d" -e "/^$/d" \
    "$template" > "$acl_file"
if [ "$(id -u)" = 0 ] && command -v gosu >/dev/null 2>&1; then
    # Started as root (the redis image's default), which can read the secret files
    # whoever owns them: run redis-server as the image's redis user, as its own
    # entrypoint does.
    chown redis "$acl_file"
    exec gosu redis redis-server --aclfile "$acl_file" "$@"
fi
exec redis-server --aclfile "$acl_file" "$@"
