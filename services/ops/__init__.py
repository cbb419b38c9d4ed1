"""The operator console, ``/ops/`` through the gateway: what needs a person, in a browser.

It shows what the operator commands show (payments in flight and stuck, refunds not done,
dead letters, reconciliation reports, security events) and does what they do (a refund retried
under a new key, a dead letter replayed), through the same functions, each action audited in
``approval.operator_actions``.

Least privilege: the console holds no PG secret key (it never calls the PG). Its broker user
(``OPS_AMQP_URL``) may read the dead-letter queues and publish their events to the events
exchange, nothing else (:data:`shared.topology.REPLAYS`). In the database it works on
approval's tables as approval's own role (``OPS_DATABASE_URL`` is approval's user): the tables
it reads and the refund row it updates are approval's, and a role of its own would need grants
on tables that approval's migrations create after provisioning.
"""
