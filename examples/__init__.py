"""Runnable example apps (`cocaine-http dev examples.flask_app.app:app` from the checkout)."""
