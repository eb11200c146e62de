"""streams: the worker (Faust app, the hot path, its supervision); tools/ holds the commands around it."""
