"""The gateway: nginx's configuration template, its renderer, and the storefront it serves."""
