#!/bin/sh
# add-header.sh - an example smtpd filter (docs/transformations.md).
# Reads one message on stdin, writes it to stdout with an
# "X-Filtered-By: smtpd-example" header added and, when the sender's domain
# is not ours, the Subject tagged "[ext]". Only the header block (up to the
# first empty line) is touched; the body passes through unchanged.
#
#   smtpd -d example.org -t 'LOCAL_DOMAIN=example.org /path/to/add-header.sh'
#
# LOCAL_DOMAIN: the domain whose senders are not tagged (default localhost,
# smtpd's default -d). The null sender <> (bounces) is never tagged.
set -u

lower() {
    printf '%s' "$1" | tr '[:upper:]' '[:lower:]'
}

local_domain=$(lower "${LOCAL_DOMAIN:-localhost}")
sender=${SMTPD_SENDER:-}
external=0
case "$sender" in
    *@*) [ "$(lower "${sender##*@}")" != "$local_domain" ] && external=1 ;;
esac

# Lines keep their CR: an empty line is "\r" (or "" for bare-LF input), and
# every line we add ends in CRLF like the rest of the message.
exec awk -v external="$external" '
BEGIN { in_header = 1 }
in_header && ($0 == "\r" || $0 == "") {
    printf "X-Filtered-By: smtpd-example\r\n"
    in_header = 0
}
in_header && external && tolower(substr($0, 1, 8)) == "subject:" &&
        index(tolower($0), "[ext]") == 0 {
    $0 = substr($0, 1, 8) " [ext]" substr($0, 9)
}
{ print }
END {
    if (in_header)
        printf "X-Filtered-By: smtpd-example\r\n"
}
'
