"""
The sandbox provider's own side: its books, its hosted checkout and the webhooks it sends.
Our code reaches it only through `payments.providers.sandbox` and its signed webhooks, as
it would a remote provider.
"""
