"""A Flask app served unchanged by cocaine-http (see app.py)."""
