"""Contracts and plumbing shared by every role: events, messaging, database, settings, logging.

Nothing in this package knows a business rule.
"""
