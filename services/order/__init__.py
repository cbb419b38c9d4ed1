"""The order service: catalog, customers (points, coupons) and orders, the stored payment intent.

HTTP API under ``/api`` (see ``api.py``), consumer of ``order.payment-results``, outbox relay and
expiry sweeper; ``python -m services.order [migrate]``.
"""
