"""Pieces shared by the controller, the agent and the worker."""
