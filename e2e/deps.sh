#!/bin/sh
# Installs what `make test` needs on a fresh Debian machine, and nothing
# when it is all there already (README.md lists each package and why).
# Daemons that come with a package (dovecot, haproxy, prometheus) are kept from
# starting, and their system services are left disabled: the tests start
# their own private instances.
set -e
missing=""
/usr/bin/python3 -c 'import pytest' 2>/dev/null || missing="$missing python3-pytest"
/usr/bin/python3 -c 'import xdist' 2>/dev/null || missing="$missing python3-pytest-xdist"
command -v swaks >/dev/null || missing="$missing swaks"
command -v curl >/dev/null || missing="$missing curl"
command -v msmtp >/dev/null || missing="$missing msmtp"
[ -x /usr/sbin/dovecot ] || missing="$missing dovecot-imapd"
command -v clang >/dev/null || missing="$missing clang"
ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a \
    >/dev/null 2>&1 || missing="$missing libclang-rt-14-dev"
command -v valgrind >/dev/null || missing="$missing valgrind"
command -v groff >/dev/null || missing="$missing groff"
command -v dot >/dev/null || missing="$missing graphviz"
command -v strace >/dev/null || missing="$missing strace"
# TLS: the library and its build helper, the openssl command line (test
# certificates, s_client), and the Perl TLS module swaks --tls needs
[ -f /usr/include/openssl/ssl.h ] || missing="$missing libssl-dev"
command -v pkg-config >/dev/null || missing="$missing pkg-config"
command -v openssl >/dev/null || missing="$missing openssl"
perl -MNet::SSLeay -e 1 2>/dev/null || missing="$missing libnet-ssleay-perl"
# swaks -6 needs it; it is only a Recommends of swaks
perl -MIO::Socket::INET6 -e 1 2>/dev/null || missing="$missing libio-socket-inet6-perl"
command -v fail2ban-regex >/dev/null || missing="$missing fail2ban"
command -v mkpasswd >/dev/null || missing="$missing whois"
[ -x /usr/sbin/haproxy ] || missing="$missing haproxy"
# a real Prometheus scrapes --metrics; promtool checks its output and
# docs/prometheus.yml, docs/alerts.yml
command -v prometheus >/dev/null || missing="$missing prometheus"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "make test needs:$missing (run as root to install them)" >&2
    exit 1
fi
echo "installing:$missing"
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing
[ "$own_policy" = 1 ] && rm -f "$policy"
# The packages enable dovecot, haproxy and prometheus at boot; the
# suite needs only its private instances, so the system's stay off.
if [ -e /lib/systemd/system/dovecot.service ] && command -v systemctl >/dev/null; then
    systemctl disable dovecot.service >/dev/null 2>&1 || true
    systemctl disable dovecot.socket >/dev/null 2>&1 || true
fi
if [ -e /lib/systemd/system/haproxy.service ] && command -v systemctl >/dev/null; then
    systemctl disable haproxy.service >/dev/null 2>&1 || true
fi
if [ -e /lib/systemd/system/prometheus.service ] && command -v systemctl >/dev/null; then
    systemctl disable prometheus.service >/dev/null 2>&1 || true
fi
exit 0
