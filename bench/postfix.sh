#!/bin/bash
# postfix.sh - a private Postfix instance for side-by-side benchmarks:
# loopback only, its own config, queue and data directories under DIR,
# delivering durably to DIR/mail/<box>/ (Maildir) through the virtual agent.
# The system's /etc/postfix is never read or changed.
#
#   bench/postfix.sh start DIR PORT DOMAIN BOX...   configure and start
#   bench/postfix.sh stop DIR                       stop (and kill by PID)
#
# Mail for BOX@DOMAIN lands in DIR/mail/BOX/new/. Deliveries run as
# nobody:nogroup, who owns DIR/mail.
set -eu

usage() {
    echo "usage: $0 start DIR PORT DOMAIN BOX... | stop DIR" >&2
    exit 2
}

# main.cf: durable defaults kept (queue files and Maildir files are fsynced
# by Postfix); only what a private loopback instance needs is set.
write_main_cf() {
    dir=$1 domain=$2
    cat >"$dir/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.invalid
mydomain = invalid
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = $domain
virtual_mailbox_base = $dir/mail
virtual_mailbox_maps = texthash:$dir/etc/vmailbox
virtual_minimum_uid = 100
virtual_uid_maps = static:$(id -u nobody)
virtual_gid_maps = static:$(id -g nobody)
virtual_mailbox_limit = 0
message_size_limit = 0
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
default_process_limit = 200
biff = no
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
alias_maps =
alias_database =
local_recipient_maps =
shlib_directory = /usr/lib/postfix
multi_instance_enable = no
EOF
    # PF_TLS_CERT / PF_TLS_KEY: offer STARTTLS, as smtpd does
    if [ -n "${PF_TLS_CERT:-}" ]; then
        cat >>"$dir/etc/main.cf" <<EOF
smtpd_tls_cert_file = $PF_TLS_CERT
smtpd_tls_key_file = ${PF_TLS_KEY:-$PF_TLS_CERT}
smtpd_tls_security_level = may
EOF
    fi
}

# master.cf: the stock services, nothing chrooted, SMTP on 127.0.0.1:PORT.
write_master_cf() {
    dir=$1 port=$2
    cat >"$dir/etc/master.cf" <<EOF
127.0.0.1:$port inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
}

pf_start() {
    [ $# -ge 4 ] || usage
    dir=$1 port=$2 domain=$3
    shift 3
    mkdir -p "$dir/etc" "$dir/queue" "$dir/data" "$dir/mail"
    write_main_cf "$dir" "$domain"
    write_master_cf "$dir" "$port"
    : >"$dir/etc/vmailbox"
    for box in "$@"; do
        echo "$box@$domain $box/" >>"$dir/etc/vmailbox"
    done
    chown nobody:nogroup "$dir/mail"
    chown postfix "$dir/data"
    postfix -c "$dir/etc" set-permissions >/dev/null 2>&1 || true
    postfix -c "$dir/etc" start >"$dir/start.log" 2>&1 || {
        cat "$dir/start.log" "$dir/maillog" >&2
        return 1
    }
    # Ready when the port answers with a greeting (bounded wait).
    i=0
    while [ $i -lt 100 ]; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi 2>/dev/null
        sleep 0.1
        i=$((i + 1))
    done
    echo "postfix did not open port $port" >&2
    return 1
}

pf_stop() {
    [ $# -eq 1 ] || usage
    dir=$1
    pidfile="$dir/queue/pid/master.pid"
    pid=$(tr -d ' \n' <"$pidfile" 2>/dev/null || true)
    postfix -c "$dir/etc" stop >/dev/null 2>&1 || true
    # Bounded wait for the master (and with it its children) to go.
    i=0
    while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null || true
    fi
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
start) pf_start "$@" ;;
stop) pf_stop "$@" ;;
*) usage ;;
esac
