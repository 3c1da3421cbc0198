# shellcheck shell=bash
# Shared helpers for scripts/test, scripts/dev and .ci/run. Source it; do not
# execute it. Every function is idempotent: it checks first and installs or
# starts something only when it is missing, so running it on a prepared
# machine costs a few milliseconds and touches nothing.
#
# Target: Debian (or Ubuntu) with Go installed, as root or with sudo.

# mv_log prints a progress line on stderr, so that stdout stays the tool's own.
mv_log() { printf '==> %s\n' "$*" >&2; }

mv_die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# mv_root runs a command as root: directly when we are root, else through sudo.
mv_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		mv_die "need root to run '$*' (run as root or install sudo)"
	fi
}

mv_have_apt() { command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; }

# mv_pkg_installed NAME: true when the Debian package is fully installed.
mv_pkg_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]
}

MV_APT_UPDATED=${MV_APT_UPDATED:-}

# mv_apt_install PKG...: installs the packages that are not installed yet.
# apt-get update runs only when something is to be installed, once per run.
mv_apt_install() {
	local missing=() p
	for p in "$@"; do
		mv_pkg_installed "$p" || missing+=("$p")
	done
	[ "${#missing[@]}" -eq 0 ] && return 0
	mv_have_apt || mv_die "missing ${missing[*]} and no apt-get here: install them with your package manager"
	if [ -z "$MV_APT_UPDATED" ]; then
		mv_log "apt-get update"
		mv_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
		MV_APT_UPDATED=1
	fi
	mv_log "apt-get install ${missing[*]}"
	mv_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# mv_softhsm_module prints the path of the SoftHSM2 PKCS#11 module, if any.
mv_softhsm_module() {
	local f
	for f in "${MOONVAULT_HSM_LIB:-}" /usr/lib/softhsm/libsofthsm2.so \
		/usr/lib/*-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
		if [ -n "$f" ] && [ -f "$f" ]; then
			printf '%s\n' "$f"
			return 0
		fi
	done
	return 1
}

# mv_ensure_softhsm installs SoftHSM2 (the PKCS#11 token used by dev mode and
# the HSM tests) and, best effort, opensc for pkcs11-tool.
mv_ensure_softhsm() {
	if ! mv_softhsm_module >/dev/null || ! command -v softhsm2-util >/dev/null 2>&1; then
		mv_apt_install softhsm2
	fi
	mv_softhsm_module >/dev/null || mv_die "SoftHSM2 installed but libsofthsm2.so not found"
	if ! command -v pkcs11-tool >/dev/null 2>&1; then
		# Optional: only for inspecting tokens by hand.
		mv_apt_install opensc || mv_log "opensc (pkcs11-tool) not installed; continuing without it"
	fi
}

# The opencryptoki software token the tests use as a second PKCS#11
# implementation (internal/hsm/hsmtest.OpenCryptoki reads the same values).
MV_OCK_SLOT=3
MV_OCK_CONF=/etc/opencryptoki/opencryptoki.conf
MV_OCK_SO_DEFAULT=87654321 # the SO PIN of a fresh opencryptoki token
MV_OCK_SO_PIN=mvtestso     # throwaway test PINs (opencryptoki takes 4-8 characters)
MV_OCK_USER_PIN=${MOONVAULT_TEST_OCK_PIN:-mvtest42}

mv_ock_conf_body() {
	printf '%s\n' '# moonvault: only the software token, for the test suite' \
		'version opencryptoki-3.1' '' "slot $MV_OCK_SLOT" '{' 'stdll = libpkcs11_sw.so' '}'
}

# mv_ock_token_flags prints the token flags line of slot 3 (pkcsconf -t).
mv_ock_token_flags() {
	pkcsconf -t -c "$MV_OCK_SLOT" 2>/dev/null | sed -n 's/^[[:space:]]*Flags:[[:space:]]*//p' | head -n 1
}

# mv_ock_running is true when the pkcsslotd of the pid file is alive (not
# a zombie).
mv_ock_running() {
	local pid
	pid=$(cat /var/run/pkcsslotd.pid 2>/dev/null) || return 1
	[ -r "/proc/$pid/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status"
}

# mv_ock_pkcsconf runs pkcsconf, which exits 0 even when the token refused
# the operation: its "Error ..." output is turned into a failure.
mv_ock_pkcsconf() {
	local out
	out=$(mv_root pkcsconf "$@" 2>&1 </dev/null) || mv_die "pkcsconf $1 failed: $out"
	case "$out" in *rror*) mv_die "pkcsconf $1: $out" ;; esac
}

# mv_ensure_opencryptoki installs opencryptoki, reduces opencryptoki.conf
# to the software token (slot 3, libpkcs11_sw.so; the other tokens need
# hardware), starts the slot daemon pkcsslotd and initialises the token
# with throwaway PINs, without prompts: PINs go in as -S/-U/-n arguments
# and the token label prompt of `pkcsconf -I` reads an empty line from
# stdin (no label: the token is chosen by slot, as hsm_slot does).
# An existing configuration or token is changed only when this run
# installed opencryptoki, in CI, or when the configuration is the
# package's unmodified default.
mv_ensure_opencryptoki() {
	local installed_now='' want tmp flags
	if ! command -v pkcsslotd >/dev/null 2>&1; then
		mv_apt_install opencryptoki
		installed_now=1
	fi
	want=$(mv_ock_conf_body)
	if [ "$(mv_root cat "$MV_OCK_CONF" 2>/dev/null)" != "$want" ]; then
		if [ -z "$installed_now" ] && [ "${CI:-}" != "true" ] && ! mv_ock_conf_is_default; then
			mv_die "$MV_OCK_CONF is not the package default; the tests need slot $MV_OCK_SLOT = libpkcs11_sw.so (see mv_ock_conf_body in scripts/lib.sh)"
		fi
		mv_log "writing $MV_OCK_CONF with only the software token (backup: $MV_OCK_CONF.moonvault.bak)"
		[ -f "$MV_OCK_CONF.moonvault.bak" ] || mv_root cp -p "$MV_OCK_CONF" "$MV_OCK_CONF.moonvault.bak" 2>/dev/null || true
		tmp=$(mktemp)
		printf '%s\n' "$want" >"$tmp"
		mv_root install -m 0644 "$tmp" "$MV_OCK_CONF"
		rm -f "$tmp"
		mv_ock_stop
	fi
	# Lock and state directories, group pkcs11 (normally systemd-tmpfiles).
	local d
	for d in /var/lock/opencryptoki /var/lock/opencryptoki/swtok /var/lib/opencryptoki /var/lib/opencryptoki/swtok /var/lib/opencryptoki/swtok/TOK_OBJ; do
		mv_root install -d -m 0770 -g pkcs11 "$d"
	done
	if ! mv_ock_running; then
		mv_log "starting pkcsslotd"
		mv_root pkcsslotd || mv_die "pkcsslotd did not start"
	fi
	flags=$(mv_ock_token_flags)
	[ -n "$flags" ] || mv_die "no opencryptoki token in slot $MV_OCK_SLOT (pkcsconf -t shows none)"
	case "$flags" in
	*TOKEN_INITIALIZED*) ;;
	*)
		mv_log "initialising the opencryptoki software token in slot $MV_OCK_SLOT"
		printf '\n' | mv_root pkcsconf -I -c "$MV_OCK_SLOT" -S "$MV_OCK_SO_DEFAULT" >/dev/null ||
			mv_die "pkcsconf -I failed"
		mv_ock_pkcsconf -P -c "$MV_OCK_SLOT" -S "$MV_OCK_SO_DEFAULT" -n "$MV_OCK_SO_PIN"
		mv_ock_pkcsconf -u -c "$MV_OCK_SLOT" -S "$MV_OCK_SO_PIN" -n mvinit01
		mv_ock_pkcsconf -p -c "$MV_OCK_SLOT" -U mvinit01 -n "$MV_OCK_USER_PIN"
		flags=$(mv_ock_token_flags)
		;;
	esac
	case "$flags" in
	*USER_PIN_INITIALIZED*) ;;
	*) mv_die "the opencryptoki token in slot $MV_OCK_SLOT has no user PIN (flags: $flags); re-initialise it or set MOONVAULT_TEST_OCK_PIN" ;;
	esac
	# Not root: the tests talk to pkcsslotd through a socket of group pkcs11.
	if [ "$(id -u)" -ne 0 ] && ! id -nG | tr ' ' '\n' | grep -qx pkcs11; then
		mv_log "adding $(id -un) to group pkcs11 (opencryptoki's socket and token directory)"
		mv_root usermod -aG pkcs11 "$(id -un)"
	fi
}

# mv_ock_conf_is_default is true when opencryptoki.conf is as the package
# shipped it (dpkg's conffile checksum).
mv_ock_conf_is_default() {
	local want
	want=$(dpkg-query -W -f='${Conffiles}' opencryptoki 2>/dev/null | awk -v f="$MV_OCK_CONF" '$1 == f {print $2}')
	[ -n "$want" ] && [ "$(mv_root md5sum "$MV_OCK_CONF" | cut -d' ' -f1)" = "$want" ]
}

# mv_ock_stop stops the slot daemon this machine runs (by its pid file), so
# that it reads a new configuration when started again.
mv_ock_stop() {
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet pkcsslotd 2>/dev/null; then
		mv_root systemctl stop pkcsslotd
	elif mv_ock_running; then
		mv_root kill "$(cat /var/run/pkcsslotd.pid)"
		local _
		for _ in $(seq 1 50); do
			mv_ock_running || return 0
			sleep 0.1
		done
		mv_die "pkcsslotd did not stop"
	fi
}

# mv_with_pkcs11_group runs a command with group pkcs11 in effect: directly
# when the process has it (or is root), else through sg (group membership
# added by mv_ensure_opencryptoki only applies to new logins).
mv_with_pkcs11_group() {
	if [ "$(id -u)" -eq 0 ] || id -nG | tr ' ' '\n' | grep -qx pkcs11; then
		"$@"
	else
		sg pkcs11 -c "$(printf '%q ' "$@")"
	fi
}

# mv_ensure_cc installs a C toolchain: cgo needs it for PKCS#11, and the race
# detector needs cgo.
mv_ensure_cc() {
	command -v gcc >/dev/null 2>&1 && return 0
	mv_apt_install gcc libc6-dev
}

MV_PG_HOST=127.0.0.1
MV_PG_PORT=5432

mv_pg_ready() { pg_isready -q -h "$MV_PG_HOST" -p "$MV_PG_PORT" >/dev/null 2>&1; }

# mv_pg_wait waits up to 30 s for PostgreSQL to accept connections.
mv_pg_wait() {
	local _
	for _ in $(seq 1 60); do
		mv_pg_ready && return 0
		sleep 0.5
	done
	return 1
}

# mv_pg_version prints the newest PostgreSQL major version with a 'main' cluster.
mv_pg_version() {
	[ -d /etc/postgresql ] || return 1
	# shellcheck disable=SC2012 # version directories are plain numbers
	ls /etc/postgresql 2>/dev/null | sort -n | while read -r v; do
		[ -d "/etc/postgresql/$v/main" ] && echo "$v"
	done | tail -n 1 | grep .
}

# mv_pg_login_ok is true when user postgres can log in over TCP without a
# password (-w: never prompt).
mv_pg_login_ok() {
	psql -w -h "$MV_PG_HOST" -p "$MV_PG_PORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1
}

# mv_pg_trust_local makes cluster $1 accept any local user from 127.0.0.1 and
# ::1 without a password, as the tests expect. It adds two marked lines at the
# top of pg_hba.conf (the first matching line wins), once, keeping a backup.
mv_pg_trust_local() {
	local v=$1 hba="/etc/postgresql/$1/main/pg_hba.conf" marker="# moonvault: local trust for tests" tmp
	mv_root test -f "$hba" || mv_die "no $hba"
	mv_root grep -qF "$marker" "$hba" && return 0
	mv_log "configuring trust auth for 127.0.0.1 and ::1 in $hba (backup: $hba.moonvault.bak)"
	tmp=$(mktemp)
	{
		printf '%s\n' "$marker" \
			'host    all             all             127.0.0.1/32            trust' \
			'host    all             all             ::1/128                 trust'
		mv_root cat "$hba"
	} >"$tmp"
	mv_root cp -p "$hba" "$hba.moonvault.bak"
	mv_root install -m 0640 -o postgres -g postgres "$tmp" "$hba"
	rm -f "$tmp"
	mv_root pg_ctlcluster --skip-systemctl-redirect "$v" main reload
}

# mv_ensure_postgres makes PostgreSQL answer at 127.0.0.1:5432 with trust auth
# for user postgres: starts the existing cluster, or installs one. With
# MOONVAULT_TEST_POSTGRES_URL set, the tests use that server and nothing local
# is touched.
mv_ensure_postgres() {
	if [ -n "${MOONVAULT_TEST_POSTGRES_URL:-}" ]; then
		mv_log "MOONVAULT_TEST_POSTGRES_URL is set; not managing a local PostgreSQL"
		return 0
	fi
	# Already answering (a local cluster, or a container publishing 5432)?
	if command -v psql >/dev/null 2>&1 && mv_pg_ready && mv_pg_login_ok; then
		return 0
	fi
	local installed_now='' v
	if ! command -v pg_isready >/dev/null 2>&1 || ! mv_pg_version >/dev/null; then
		mv_apt_install postgresql
		installed_now=1
	fi
	v=$(mv_pg_version) || mv_die "PostgreSQL is installed but has no cluster under /etc/postgresql/*/main"
	# Fixes to the cluster's configuration are made only to a cluster this
	# script installed, or in CI; on someone's own machine we do not change or
	# loosen an existing configuration, we say what to do.
	local may_configure=''
	if [ -n "$installed_now" ] || [ "${CI:-}" = "true" ]; then may_configure=1; fi
	if ! mv_pg_ready; then
		# pg_createcluster picks 5433 when 5432 was taken at install time.
		local port
		port=$(mv_root pg_conftool -s "$v" main show port 2>/dev/null || echo "$MV_PG_PORT")
		if [ "$port" != "$MV_PG_PORT" ]; then
			[ -n "$may_configure" ] || mv_die "PostgreSQL $v/main is configured for port $port, the tests expect $MV_PG_PORT (set MOONVAULT_TEST_POSTGRES_URL)"
			mv_log "moving PostgreSQL $v/main from port $port to $MV_PG_PORT"
			mv_root pg_ctlcluster --skip-systemctl-redirect "$v" main stop >/dev/null 2>&1 || true
			mv_root pg_conftool "$v" main set port "$MV_PG_PORT"
		fi
	fi
	if ! mv_pg_ready; then
		mv_log "starting PostgreSQL $v/main"
		mv_root pg_ctlcluster --skip-systemctl-redirect "$v" main start ||
			mv_log "pg_ctlcluster start failed; waiting in case it is already starting"
		mv_pg_wait || mv_die "PostgreSQL $v/main did not come up on $MV_PG_HOST:$MV_PG_PORT"
	fi
	mv_pg_login_ok && return 0
	if [ -n "$may_configure" ]; then
		mv_pg_trust_local "$v"
		mv_pg_wait && mv_pg_login_ok && return 0
	fi
	mv_die "PostgreSQL answers at $MV_PG_HOST:$MV_PG_PORT but user postgres cannot log in without a password: add 'host all all 127.0.0.1/32 trust' at the top of /etc/postgresql/$v/main/pg_hba.conf and reload, or set MOONVAULT_TEST_POSTGRES_URL"
}

# mv_ensure_chromium installs Debian's Chromium for the web console's
# browser tests (cmd/moonvault/console_test.go drives it with chromedp;
# chromium-driver is there for WebDriver clients). The tests never download
# a browser; with CI=true they fail when Chromium is missing.
mv_ensure_chromium() {
	if [ -n "${MOONVAULT_CHROMIUM:-}" ] && [ -x "${MOONVAULT_CHROMIUM}" ]; then
		return 0
	fi
	mv_apt_install chromium chromium-driver
	command -v chromium >/dev/null 2>&1 || mv_die "chromium installed but not found in PATH"
}

# mv_ensure_ethers installs ethers v6 (package-lock.json) for the tests that
# check signatures with it (internal/ethersverify), when node_modules is
# missing. Node.js and npm must be installed (node 18 or later).
mv_ensure_ethers() {
	local dir
	dir="$(mv_repo_root)/internal/ethersverify/testdata/ethers"
	[ -f "$dir/node_modules/ethers/package.json" ] && return 0
	command -v npm >/dev/null 2>&1 || mv_die "npm not found: install Node.js 18 or later (the ethers signature checks need it)"
	mv_log "npm ci in $dir"
	(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || mv_die "npm ci failed in $dir"
}

# mv_ensure_test_deps installs and starts everything the test suite needs.
mv_ensure_test_deps() {
	command -v go >/dev/null 2>&1 || mv_die "go not found in PATH (install Go $(mv_go_version) first)"
	mv_ensure_cc
	mv_ensure_softhsm
	mv_ensure_opencryptoki
	mv_ensure_postgres
	mv_ensure_chromium
	mv_ensure_ethers
}

# mv_go_version prints the Go version go.mod asks for.
mv_go_version() {
	sed -n 's/^go //p' "$(mv_repo_root)/go.mod" 2>/dev/null | head -n 1
}

# mv_repo_root prints the repository root (the directory holding scripts/).
mv_repo_root() {
	(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
}
