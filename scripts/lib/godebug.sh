# Sourced where the long-running processes are launched (scripts/run.sh,
# scripts/load.sh, scripts/prom-check.sh, make bench): the Go runtime setting
# they were measured with (docs/PERFORMANCE.md, "The runtime's monitor").
# schedtrace with a period of 2^31-1 ms (24.8 days) keeps the runtime's
# monitor thread out of deep sleep, which under load it otherwise enters and
# leaves thousands of times a second; in practice no trace is ever printed.
# A GODEBUG that already names schedtrace is left as it is, so
# GODEBUG=schedtrace=0 turns the setting off. Deploy files set the same value.
case ",${GODEBUG:-}," in
  *,schedtrace=*) ;;
  *) export GODEBUG="${GODEBUG:+$GODEBUG,}schedtrace=2147483647" ;;
esac
