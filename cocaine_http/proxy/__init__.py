"""`cocaine-http proxy`: the HTTP front of a Cocaine cluster (docs/proxy.md).

The front (`connection.Front`) speaks HTTP/1.1 to clients and hands each request to an
upstream: `upstream.ClusterUpstream` resolves apps through the cluster's locators and calls
their `enqueue`; the dev runtime puts the same front on its engines. `routing` decides where a
request goes, `checks` refuses what h11 lets through but HTTP forbids (docs/proxy-parsing.md),
`forwarded` sets the X-Forwarded-* headers, `server` is the command line, its worker processes
and signals.
"""
