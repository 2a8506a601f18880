"""The fleetconf controller: versions the configuration and serves it to agents."""
