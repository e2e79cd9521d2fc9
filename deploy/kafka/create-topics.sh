#!/bin/sh
# Create the receivables topics if they do not exist (idempotent; existing topics are left
# as they are: partitions are never changed here, see deploy/README.md before adding any).
# Runs in the apache/kafka image (docker-compose.yml's `topics` service) or anywhere
# kafka-topics.sh is on hand:
#   BOOTSTRAP=kafka:9092 REPLICATION_FACTOR=3 MIN_INSYNC_REPLICAS=2 sh create-topics.sh
set -eu

BOOTSTRAP="${BOOTSTRAP:-kafka:9092}"
REPLICATION_FACTOR="${REPLICATION_FACTOR:-3}"
MIN_INSYNC_REPLICAS="${MIN_INSYNC_REPLICAS:-2}"
KAFKA_TOPICS="${KAFKA_TOPICS:-/opt/kafka/bin/kafka-topics.sh}"

FOREVER=-1
DAYS_90=7776000000

# Every topic a service consumes is kept forever: credit follows ar.dunning.actions (broken
# promises and plans, judged over 90 days) and dunning ar.credit.events, and a service
# rebuilt from the start must find every fact it had.
# topic               partitions  retention.ms
TOPICS="
ar.invoices           12          $FOREVER
ar.payments           12          $FOREVER
ar.disputes           12          $FOREVER
ar.customers          12          $FOREVER
ar.ratings            12          $FOREVER
ar.ledger.events      12          $FOREVER
ar.dunning.actions    6           $FOREVER
ar.credit.events      6           $FOREVER
ar.deadletter         3           $DAYS_90
"

echo "$TOPICS" | while read -r topic partitions retention; do
  [ -n "$topic" ] || continue
  "$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
    --topic "$topic" --partitions "$partitions" --replication-factor "$REPLICATION_FACTOR" \
    --config cleanup.policy=delete \
    --config retention.ms="$retention" \
    --config min.insync.replicas="$MIN_INSYNC_REPLICAS" \
    --config unclean.leader.election.enable=false
done
"$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --describe --topics-with-overrides
