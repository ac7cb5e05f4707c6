"""A small Django project served unchanged by cocaine-http, through wsgi.py or asgi.py."""
