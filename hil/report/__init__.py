"""Front-end renderings of a RunResult: a text table, JSON and JUnit XML."""
