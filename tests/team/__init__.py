"""The team set-up: a real tracking server (PostgreSQL, basic auth) and shared S3 storage."""
