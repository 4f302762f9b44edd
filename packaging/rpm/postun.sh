# As %systemd_postun_with_restart: after an upgrade, restart a running node
# (it drains its task first); after erase, forget the unit. State in
# /var/lib/dgrid-worker, the token and the node key stay, as on any Fedora
# erase.
systemctl daemon-reload >/dev/null 2>&1 || :
if [ "$1" -ge 1 ]; then
  systemctl try-restart dgrid-worker.service >/dev/null 2>&1 || :
fi
