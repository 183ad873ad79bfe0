"""Generated media (no binary files in git): images, signed and declared-AI files, video clips. Shared by
the tests and the benchmarks."""
