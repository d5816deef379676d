#!/usr/bin/env bash
# Installs the real peers the test suite talks to, when they are missing:
# swaks, openssl, Python (smtplib), Postfix with Cyrus SASL tools (benchmark peer).
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
echo "install-peers: ok"
