"""Train Once, Serve Millions: the course library. See README.md for the lesson map."""
