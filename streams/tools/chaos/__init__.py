"""`streamrec chaos`: fault scenarios against the real broker, judged by an oracle over every event."""
