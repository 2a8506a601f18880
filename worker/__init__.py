"""The fleetconf worker: holds one configuration and proxies ``GET /hit`` to its URL."""
