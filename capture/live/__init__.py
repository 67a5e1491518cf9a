"""The live path: an HTTP/1.1 reverse proxy on asyncio Protocols that copies bytes, reads clocks.

``server`` (one Protocol per client connection), ``request`` (one request, both sides),
``upstream`` (the pool of keep-alive connections to the one upstream), ``heads`` (what is
dropped and set), ``context`` (what one listener's connections share), ``serve``
(:class:`~capture.live.serve.LiveServer`: listener, start, stop).
"""
