"""The fleetconf agent: fetches the configuration and keeps the worker beside it in step."""
