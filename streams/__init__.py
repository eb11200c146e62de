"""streams: the Faust side of streamrec (topic contracts, sequence table, agent, CLI)."""
