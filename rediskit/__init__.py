"""What the Redis-facing packages (inventory, realtime, orders) share: the client
factory, the Lua loader, the clock and bytes decoding. It is their floor and imports
nothing of the project, so none of them has to import a sibling for these."""
