"""The sandbox PG: a local Toss Payments (core API, payment window, JS SDK stand-in, ledger)."""
