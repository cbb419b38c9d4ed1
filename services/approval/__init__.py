"""The approval worker: the part of the system that moves money.

It projects order intents, verifies each authentication the PG sent back against the stored
intent, confirms verified ones with the PG (one idempotency key per payment, forever), settles
unknown outcomes by asking the PG, and refunds on request. See ``domain.py`` for the states and
``service.py`` for how an attempt is driven; ``bootstrap.py`` wires it all.
"""
