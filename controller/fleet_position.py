"""Where the database stands against the fleet: is any agent ahead of it?

A database restored from an older copy (or a failover that lost commits) is behind the
versions the fleet already saw. The agents say so: each reports the version its worker
holds, and the fleet row keeps the highest ever reported. This replica's
:class:`FleetPosition` holds the figures as of its latest refresh and logs each change.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


class FleetPosition:
    """The current version and the highest version reported in the fleet, as of the
    replica's latest look; ``ahead`` while the second is above the first."""

    def __init__(self) -> None:
        self.current_version = 0
        self.highest_reported_version = 0

    @property
    def ahead(self) -> bool:
        """True while some agent reported (or some replica served) a version above the
        database's current one."""
        return self.highest_reported_version > self.current_version

    def note(self, *, current_version: int, highest_reported_version: int) -> None:
        """New figures; logged once per change while the fleet is ahead, and when it
        stops being so."""
        figures = (current_version, highest_reported_version)
        if figures == (self.current_version, self.highest_reported_version):
            return
        was_ahead = self.ahead
        self.current_version, self.highest_reported_version = figures
        if self.ahead:
            logger.warning(
                "fleet.ahead_of_database current_version=%d highest_reported=%d: the "
                "database is behind the fleet (restored from an older copy?); the next "
                "version will be %d",
                current_version,
                highest_reported_version,
                highest_reported_version + 1,
            )
        elif was_ahead:
            logger.info(
                "fleet.caught_up current_version=%d highest_reported=%d",
                current_version,
                highest_reported_version,
            )
