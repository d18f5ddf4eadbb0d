#!/usr/bin/env bash
# The RabbitMQ Java client comes from Debian (librabbitmq-client-java, with slf4j); javac from a
# JDK. Installed only when missing; needs root (or passwordless sudo) the first time.
set -euo pipefail
need=()
[ -f /usr/share/java/amqp-client.jar ] || need+=(librabbitmq-client-java)
[ -f /usr/share/java/slf4j-nop.jar ] || need+=(libslf4j-java)
command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo -n"
echo "installing the Java interop peer: ${need[*]}"
$sudo apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || {
  $sudo apt-get update -q >/dev/null
  $sudo apt-get install -y -q "${need[@]}" >/dev/null
}
