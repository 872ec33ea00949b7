#!/bin/sh
# Installs what `make test` needs on a fresh Debian machine, and nothing
# when it is all there already (README.md lists each package and why).
# Daemons that come with a package (dovecot, haproxy, prometheus, postfix)
# are kept from starting, and their system services are left disabled: the
# tests start their own private instances.
# Exim, a sender that speaks BDAT, cannot be installed next to Postfix: its
# package is fetched and unpacked into EXIM_DIR instead, and run from there
# with a configuration of its own (e2e/test_exim_bdat.py).
set -e
EXIM_DIR=${SMTPD_TEST_EXIM:-/var/cache/smtpd-test/exim}
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
# a private Postfix relays to smtpd (e2e/test_postfix_relay.py, bench/)
[ -x /usr/sbin/postfix ] || missing="$missing postfix"

# Exim is ready when its unpacked binary finds all its libraries and the
# user it was built for exists (it will not start without that user).
exim_ready() {
    [ -x "$EXIM_DIR/usr/sbin/exim4" ] || return 1
    getent passwd Debian-exim >/dev/null || return 1
    ! ldd "$EXIM_DIR/usr/sbin/exim4" 2>/dev/null | grep -q "not found"
}
need_exim=0
exim_ready || need_exim=1
[ -z "$missing" ] && [ "$need_exim" = 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    [ "$need_exim" = 1 ] && missing="$missing exim4-daemon-light (unpacked into $EXIM_DIR)"
    echo "make test needs:$missing (run as root to install them)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"
}

install_packages() {
    echo "installing:$*"
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1
        trap 'rm -f "$policy"' EXIT     # also when apt-get fails
    fi
    # Postfix without a system configuration: the tests write their own.
    case " $* " in *" postfix "*)
        echo "postfix postfix/main_mailer_type select No configuration" |
            debconf-set-selections ;;
    esac
    apt-get update -qq
    # --no-remove: Postfix replaces another mail server (exim4, ...); this
    # stops instead of removing it
    apt-get install -y -qq --no-install-recommends --no-remove "$@"
    if [ "$own_policy" = 1 ]; then rm -f "$policy"; trap - EXIT; fi
    # The packages enable dovecot, haproxy, prometheus and postfix at boot;
    # the suite needs only its private instances, so the system's stay off.
    command -v systemctl >/dev/null || return 0
    for unit in dovecot.service dovecot.socket haproxy.service \
                prometheus.service postfix.service; do
        if [ -e "/lib/systemd/system/$unit" ]; then
            systemctl disable "$unit" >/dev/null 2>&1 || true
        fi
    done
}

# Exim's package unpacked, not installed (dpkg-deb -x): no service, no
# /etc/exim4, nothing in dpkg's database; it is run as EXIM_DIR/usr/sbin/exim4
# with its own configuration. Its libraries are ordinary packages.
unpack_exim() {
    echo "unpacking exim4-daemon-light into $EXIM_DIR"
    tmp=$(mktemp -d)
    chmod 755 "$tmp"
    chown _apt "$tmp" 2>/dev/null || true     # apt downloads as _apt
    if ! (cd "$tmp" && apt-get download -qq exim4-daemon-light); then
        apt-get update -qq
        (cd "$tmp" && apt-get download -qq exim4-daemon-light)
    fi
    deb=$(ls "$tmp"/exim4-daemon-light_*.deb)
    libs=""
    for p in $(dpkg-deb -f "$deb" Depends | tr ',' '\n' |
               sed 's/|.*//; s/(.*)//; s/ //g' | grep '^lib'); do
        installed "$p" || libs="$libs $p"
    done
    [ -z "$libs" ] || apt-get install -y -qq --no-install-recommends --no-remove $libs
    rm -rf "$EXIM_DIR.new"
    mkdir -p "$EXIM_DIR.new"
    dpkg-deb -x "$deb" "$EXIM_DIR.new"
    # the tests run it as root: no set-user-ID copy that no update reaches
    find "$EXIM_DIR.new" -perm /6000 -exec chmod ug-s {} +
    dpkg-deb -f "$deb" Version > "$EXIM_DIR.new/VERSION"
    rm -rf "$EXIM_DIR" "$tmp"
    mv "$EXIM_DIR.new" "$EXIM_DIR"
    # the user exim4-base would create, with the same options
    if ! getent passwd Debian-exim >/dev/null; then
        if command -v adduser >/dev/null; then
            adduser --system --group --quiet --home /var/spool/exim4 \
                --no-create-home --disabled-login --force-badname Debian-exim
        else
            useradd --system --user-group --no-create-home \
                --home-dir /var/spool/exim4 --shell /usr/sbin/nologin Debian-exim
        fi
    fi
    exim_ready || {
        echo "exim in $EXIM_DIR does not run:" >&2
        ldd "$EXIM_DIR/usr/sbin/exim4" >&2
        exit 1
    }
}

[ -z "$missing" ] || install_packages $missing
[ "$need_exim" = 0 ] || unpack_exim
exit 0
