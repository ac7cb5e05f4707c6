"""`cocaine-http proxy`: the HTTP front for Cocaine clusters (docs/proxy.md)."""
