"""Streaming: producers that put records on Kafka topics, and the sink that lands them in Postgres exactly once."""
