# The user before the files: what %sysusers_create_compat does on Fedora.
systemd-sysusers --replace=/usr/lib/sysusers.d/dgrid-worker.conf - <<'SYSUSERS' >/dev/null
u dgrid-worker - "D-GRID worker" /var/lib/dgrid-worker /usr/sbin/nologin
SYSUSERS
