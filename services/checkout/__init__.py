"""Checkout: receives the PG's success and fail redirects, records each once, announces it."""
