"""The Durable Streams HTTP API."""
