"""Registering with the controller under one Idempotency-Key per registration.

The key (a UUID4) is made before the first attempt and saved in the state directory
(``registration.json``) before it is sent; every attempt sends it, across restarts, so a
registration whose answer was lost gives the same agent, not a second one. It is dropped
once the identity is saved, or when the controller refuses it (409), and the next
registration gets a new one.
"""

from __future__ import annotations

import logging
import uuid

from agent.constants import REGISTRATION_STATE
from agent.controller_client import ControllerClient, Registration
from agent.errors import KeyRefused
from agent.settings import AgentSettings
from agent.storage import Storage
from agent.storage_writer import StorageWriter

logger = logging.getLogger(__name__)


class Registrar:
    """``POST /register`` with the registration's key, kept in storage until it is done."""

    def __init__(self, settings: AgentSettings, *, storage: Storage, writer: StorageWriter) -> None:
        self._settings = settings
        self._storage = storage
        self._writer = writer
        self.key: uuid.UUID | None = None

    async def register(self, controller: ControllerClient) -> Registration:
        """One attempt; the errors are the client's (KeyRefused: the key is dropped)."""
        settings = self._settings
        key = await self._key()
        try:
            return await controller.register(
                registration_token=settings.registration_token.get_secret_value(),
                hostname=settings.hostname,
                labels=settings.labels,
                idempotency_key=key,
            )
        except KeyRefused:
            logger.warning("agent.registration_key_refused: registering with a new key")
            await self.done()
            raise

    async def done(self) -> None:
        """The registration ended (the identity is saved, or the key was refused)."""
        self.key = None
        await self._writer.write(self._storage.clear_registration_key, state=REGISTRATION_STATE)

    async def _key(self) -> uuid.UUID:
        """The key kept, or a new one, saved before it is sent."""
        if self.key is None:
            key = uuid.uuid4()
            await self._writer.write(
                self._storage.save_registration_key,
                self._settings.controller_url,
                key,
                state=REGISTRATION_STATE,
            )
            self.key = key
        return self.key
