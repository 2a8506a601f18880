"""``fleetconf``: the admin's command line for a fleetconf controller."""
