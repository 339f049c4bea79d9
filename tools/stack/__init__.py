"""The local development stack: Kafka, Cassandra and Redis started from registry packages."""
