"""The HTTP edge: middleware, problem responses, body parsing, routes."""
