#!/bin/sh
# bench/passwd_startup.sh SMTPD PASSWD ROOT - starts smtpd with a password
# file and prints the seconds until the users are loaded and until it is
# ready (every mailbox made). docs/benchmarks.md, "Logins". Uses ports
# 2597 (SMTP) and 6997 (monitor) on 127.0.0.1, and ./st.log.
set -e
rm -f st.log
t0=$(date +%s.%N)
"$1" -s 2597 -p 6997 -a 127.0.0.1 -m 127.0.0.1 -f "$3" --passwd-file "$2" -l st.log &
pid=$!
until grep -q "users may log in" st.log 2>/dev/null; do sleep 0.01; done; t1=$(date +%s.%N)
until grep -q "smtpd ready" st.log 2>/dev/null; do sleep 0.01; done; t2=$(date +%s.%N)
kill $pid; wait $pid
echo "users loaded: $(echo "$t1 - $t0" | bc) s; ready: $(echo "$t2 - $t0" | bc) s"
