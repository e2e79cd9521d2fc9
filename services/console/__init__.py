"""The console for the credit team and the portal for customers: a backend-for-frontend.

It holds no data of its own. Its pages ask the ledger, dunning and credit services' REST APIs
with the signed-in user's token (``backends``); the portal asks them with the console's own
token for the one customer its signed link names (``portal``); disputes from the portal and
payments from a provider's webhook go in as inbound events on Kafka (``publisher``).
"""
