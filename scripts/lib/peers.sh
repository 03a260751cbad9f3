# Shared by scripts/test and scripts/bench: install the peers' packages when missing and
# start a private PostgreSQL for this run (stopped on exit). Source it; it sets
# MTICKET_TEST_POSTGRES.

log() { printf '\n== %s\n' "$*"; }

install_peers() {
    local debs=(dovecot-core dovecot-pop3d dovecot-imapd postgresql swaks libnet-ssleay-perl mutt fetchmail tmux curl sqlite3)
    local missing=() p
    for p in "${debs[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
        log "installing aiosmtpd"
        python3 -m pip install -q --disable-pip-version-check aiosmtpd
    fi
}

start_postgres() {
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$pg_bin" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)"; exit 1; }
    pg_dir=$(mktemp -d /tmp/mticket-pg.XXXXXX)
    chmod 755 "$pg_dir"
    pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    trap stop_postgres EXIT
    log "starting PostgreSQL on port $pg_port"
    as_postgres "$pg_bin/initdb -D $pg_dir/data -U mticket --auth=trust" >/dev/null
    as_postgres "$pg_bin/pg_ctl -D $pg_dir/data -w -o '-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c max_connections=300 $*' -l $pg_dir/log start" >/dev/null
    export MTICKET_TEST_POSTGRES="postgres://mticket@127.0.0.1:$pg_port/postgres"
}

# initdb refuses root: run the server as the package's postgres user.
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        chown -R postgres "$pg_dir"
        su postgres -s /bin/sh -c "$*"
    else
        sh -c "$*"
    fi
}

stop_postgres() {
    as_postgres "$pg_bin/pg_ctl -D $pg_dir/data -m immediate stop" >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
}

# Request Tracker 5, the ticket-system peer of the intake benchmark (scripts/bench only; the
# benchmark starts its own RT on SQLite in a temporary directory). RT needs some MTA: dma
# has no daemon and keeps apt from pulling exim4. dbconfig-no-thanks keeps the package from
# setting up a system database (only added where dbconfig-common is not in use already).
install_rt() {
    dpkg -s request-tracker5 >/dev/null 2>&1 && return 0
    local debs=(request-tracker5)
    dpkg-query -W -f='${db:Status-Abbrev} ${Provides}\n' 2>/dev/null \
        | grep -q '^ii .*mail-transport-agent' || debs+=(dma)
    dpkg -s dbconfig-common >/dev/null 2>&1 || debs+=(dbconfig-no-thanks)
    log "installing ${debs[*]}"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${debs[@]}" >/dev/null
}

# Postfix's smtp-source and smtp-sink, the reference SMTP load tools (the submission
# benchmark's plain-SMTP row; they speak neither TLS nor AUTH). Installing postfix would
# replace the machine's MTA and set up a mail service, so the package is only downloaded
# and unpacked under target/peers/postfix, and wrappers there go on the PATH.
fetch_postfix_tools() {
    command -v smtp-source >/dev/null && command -v smtp-sink >/dev/null && return 0
    local dir="$PWD/target/peers/postfix" tool
    if [ ! -x "$dir/bin/smtp-sink" ]; then
        log "fetching Postfix's smtp-source and smtp-sink (unpacked under target/, not installed)"
        rm -rf "$dir" && mkdir -p "$dir/bin"
        (cd "$dir" && apt-get download postfix >/dev/null 2>&1) || return 1
        dpkg-deb -x "$dir"/postfix_*.deb "$dir/root" || return 1
        for tool in smtp-source smtp-sink; do
            printf '#!/bin/sh\nLD_LIBRARY_PATH="%s" exec "%s" "$@"\n' \
                "$dir/root/usr/lib/postfix" "$dir/root/usr/sbin/$tool" >"$dir/bin/$tool"
            chmod +x "$dir/bin/$tool"
        done
    fi
    export PATH="$PATH:$dir/bin"
}
