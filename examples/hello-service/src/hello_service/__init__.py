"""hello-service: a small HTTP service with a health check, a version and two JSON endpoints."""
