#!/usr/bin/env bash
# Installs the real peers the test suite talks to, when they are missing:
# swaks, openssl, Python (smtplib), Postfix with Cyrus SASL tools (benchmark peer),
# Unbound (the DNS server of delivery tests), dig, and Prometheus with promtool
# (observability tests).
# Idempotent; safe to run on every test run.
set -euo pipefail

need=()
command -v swaks >/dev/null 2>&1 || need+=(swaks)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v postfix >/dev/null 2>&1 || need+=(postfix)
command -v saslpasswd2 >/dev/null 2>&1 || need+=(sasl2-bin)
[ -e /usr/lib/x86_64-linux-gnu/sasl2/libplain.so ] || [ -n "$(ls /usr/lib/*/sasl2/libplain.so 2>/dev/null)" ] || need+=(libsasl2-modules)
command -v smtp-sink >/dev/null 2>&1 || need+=(postfix)
# swaks --tls needs Net::SSLeay, which --no-install-recommends leaves out.
perl -MNet::SSLeay -e 1 >/dev/null 2>&1 || need+=(libnet-ssleay-perl)
command -v unbound >/dev/null 2>&1 || [ -x /usr/sbin/unbound ] || need+=(unbound)
command -v dig >/dev/null 2>&1 || need+=(dnsutils)
# Debian's prometheus package ships promtool too.
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || need+=(prometheus)

if [ ${#need[@]} -gt 0 ]; then
  echo "install-peers: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  echo "postfix postfix/mailname string postern.test" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian starts the system Postfix on install; the tests run their own instances.
if command -v postfix >/dev/null 2>&1 && postfix status >/dev/null 2>&1; then
  postfix stop >/dev/null 2>&1 || true
fi
# Debian enables and starts the system Unbound (a resolver on port 53) on install; the
# tests run their own instances on other ports. Disable it when this run installed it, and
# stop it whenever it runs.
if [[ " ${need[*]} " == *" unbound "* ]]; then
  if [ -d /run/systemd/system ]; then
    systemctl disable --now unbound.service unbound-resolvconf.service >/dev/null 2>&1 || true
  else
    update-rc.d unbound disable >/dev/null 2>&1 || true
  fi
fi
if [ -d /run/systemd/system ] && systemctl is-active --quiet unbound.service 2>/dev/null; then
  systemctl stop unbound.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/unbound ] && [ -s /run/unbound.pid ] && kill -0 "$(cat /run/unbound.pid)" 2>/dev/null; then
  /etc/init.d/unbound stop >/dev/null 2>&1 || true
fi
# Likewise the system Prometheus (port 9090): the tests run their own on other ports.
if [[ " ${need[*]} " == *" prometheus "* ]]; then
  if [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  else
    update-rc.d prometheus disable >/dev/null 2>&1 || true
  fi
fi
if [ -d /run/systemd/system ] && systemctl is-active --quiet prometheus.service 2>/dev/null; then
  systemctl stop prometheus.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/prometheus ] && [ -s /run/prometheus/prometheus.pid ] && kill -0 "$(cat /run/prometheus/prometheus.pid)" 2>/dev/null; then
  /etc/init.d/prometheus stop >/dev/null 2>&1 || true
fi
echo "install-peers: ok"
